#!/usr/bin/env python
"""The library alone, the other side of ``bench/tokenizer_train.py``: one family trained from one text file.

It imports nothing of the project's, nor of the bench's: run as the bench's own
``--child``, it imported numpy and the corpus generator first (0.15-0.25 s a
run here, counted as the library's time). What must match ours (special
tokens, SentencePiece's threads and longest line) comes on the command line,
from ``preprocess/tokenizer_families.py``.

    python bench/tokenizer_library.py KIND TEXT OUT VOCAB --workers N --specials A,B,... \
        --spm_threads N --spm_max_sentence BYTES
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _count_chunk(job: tuple[str, list[str]]) -> dict[str, int]:
    from collections import Counter

    from pythainlp.tokenize import syllable_tokenize, word_tokenize

    kind, lines = job
    counts: Counter = Counter()
    for line in lines:
        words = (word_tokenize(line, engine="newmm", keep_whitespace=True) if kind == "newmm"
                 else syllable_tokenize(line, engine="dict", keep_whitespace=True))
        counts.update(w for w in words if w and not w.isspace())
    return counts


def _sentencepiece(kind: str, text: Path, out: Path, vocab: int, threads: int, max_sentence: int) -> None:
    import sentencepiece as spm

    longest = max(len(s) for s in text.read_bytes().split(b"\n"))  # ours keeps every line: so does this
    # unigram: the text as it is, as ours trains it (tokenizer_families.unigram_model)
    spec = ({"user_defined_symbols": ["<mask>", "<_>"]} if kind == "spm" else
            {"user_defined_symbols": ["<mask>"], "normalization_rule_name": "identity",
             "remove_extra_whitespaces": False})
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out / "spm"), vocab_size=vocab, model_type="unigram",
        character_coverage=0.9995, bos_id=0, pad_id=1, eos_id=2, unk_id=3, input_sentence_size=0,
        max_sentence_length=max(longest, max_sentence), hard_vocab_limit=False, num_threads=threads,
        minloglevel=2, **spec)


def _word_counts(kind: str, text: Path, out: Path, workers: int) -> None:
    from collections import Counter
    from multiprocessing import Pool

    lines = text.read_text(encoding="utf-8").splitlines()
    jobs = [(kind, lines[i:i + 2000]) for i in range(0, len(lines), 2000)]
    total: Counter = Counter()
    with Pool(workers) as pool:
        for counts in pool.imap(_count_chunk, jobs):
            total.update(counts)
    words = sorted(total, key=lambda w: (-total[w], w))
    (out / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(words)}, ensure_ascii=False))


def _tokenizers(kind: str, text: Path, out: Path, vocab: int, specials: list[str]) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.WordPiece(unk_token=specials[1]))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                                    lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials, continuing_subword_prefix="##",
                                            show_progress=False)
    tok.train([str(text)], trainer)
    tok.save(str(out / "tokenizer.json"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["bpe", "wordpiece", "unigram", "spm", "newmm", "syllable"])
    p.add_argument("text", type=Path, help="the one text file, a line a sentence")
    p.add_argument("out", type=Path, help="a dir to create")
    p.add_argument("vocab", type=int)
    p.add_argument("--workers", type=int, default=1, help="processes counting words (newmm, syllable)")
    p.add_argument("--specials", default="", help="the special tokens ours gives the trainer, comma-separated")
    p.add_argument("--spm_threads", type=int, default=16)
    p.add_argument("--spm_max_sentence", type=int, default=4192)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True)
    if a.kind in ("spm", "unigram"):
        _sentencepiece(a.kind, a.text, a.out, a.vocab, a.spm_threads, a.spm_max_sentence)
    elif a.kind in ("newmm", "syllable"):
        _word_counts(a.kind, a.text, a.out, a.workers)
    else:
        _tokenizers(a.kind, a.text, a.out, a.vocab, a.specials.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
