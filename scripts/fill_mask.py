"""Fill one <mask> with a trained model: proof that the output dir is a usable model.

    python scripts/fill_mask.py MODEL_DIR "ฉัน ชอบ <mask> มาก" [--tokenizer_type newmm]
"""

import argparse

from transformers import AutoModelForMaskedLM, pipeline

from common.tokenizer import TokenizerError, load_tokenizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("text", help="text with one <mask>")
    p.add_argument("--tokenizer_type", default="auto",
                   help="of the tokenizer saved with the model: auto reads its tokenizer.json or config; the Thai "
                   "word-level types (newmm, syllable) are named")
    a = p.parse_args()
    try:
        tokenizer = load_tokenizer(a.model_dir, a.tokenizer_type).tokenizer
    except TokenizerError as e:
        raise SystemExit(f"error: {e}") from None
    fill = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(a.model_dir), tokenizer=tokenizer,
                    device="cpu")
    print(f"fill-mask: {a.text}")
    for guess in fill(a.text.replace("<mask>", tokenizer.mask_token), top_k=3):
        print(f"  {guess['score']:.3f}  {guess['token_str']!r:>16}  ->  {guess['sequence']}")


if __name__ == "__main__":
    main()
