"""A word-level tokenizer dir (``newmm``, ``syllable``), written and read without transformers.

What ``mlm-train-tokenizer --type newmm|syllable`` saves, and what the
word-level classes of common/tokenizer_types.py load (``from_pretrained``):

    vocab.json              word -> id: WORD_SPECIALS at 0..5, then words by falling count
    tokenizer_config.json   {"tokenizer_class": the class, "added_tokens_decoder": each special
                            role's token by id, each role -> its token, "backend": "custom",
                            "model_max_length": 10**30}: what the class's save_pretrained writes
                            (tests/common/test_word_level.py compares them key for key)

Why not the class's ``save_pretrained``: importing transformers took 0.5-0.8 s
of a 3.6 s newmm run on the bench's 5 MB sample. The words of a line
(``words_of``) and the ids of a batch of lines (``encoder``) are defined here
and the classes use them, so the report measures what the classes encode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.fast_tokenizer import CONFIG_JSON, NO_LENGTH_LIMIT, TokenizerDirError, read_json_part
from common.format import SPACE_TOKEN
from common.json_files import write_json_atomic

# Each special role's token (the users' docs: <s>=0, <pad>=1, </s>=2, <unk>=3), for every class of ours.
SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
            "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"}
# Word-level vocabularies start with these, in this order.
WORD_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", SPACE_TOKEN]
VOCAB_JSON = "vocab.json"


def build_word_vocab(counts: dict[str, int], vocab_size: int | None, min_frequency: int) -> dict[str, int]:
    """Specials first (ids 0..5), then words by falling count, ties by word: deterministic."""
    words = sorted((w for w, c in counts.items() if c >= min_frequency and w not in WORD_SPECIALS),
                   key=lambda w: (-counts[w], w))
    if vocab_size is not None:
        words = words[: max(0, vocab_size - len(WORD_SPECIALS))]
    return {w: i for i, w in enumerate([*WORD_SPECIALS, *words])}


def words_of(segment: Callable[[str], list[str]], text: str, space: bool) -> list[str]:
    """``text`` segmented, every whitespace run as the space token (dropped where ``space`` is false: a
    vocabulary without one)."""
    out = []
    for w in segment(text):
        if w.isspace():
            if space:
                out.append(SPACE_TOKEN)
        elif w:
            out.append(w)
    return out


def _added_tokens_decoder(vocab: dict[str, int]) -> dict[str, dict[str, Any]]:
    ids = sorted({vocab[t] for t in SPECIALS.values()})
    token = {i: t for t, i in vocab.items()}
    return {str(i): {"content": token[i], "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True} for i in ids}


def write_word_dir(out: Path, vocab: dict[str, int], class_name: str) -> None:
    """``vocab`` (``build_word_vocab``'s) as a dir ``class_name`` loads, the files its save_pretrained writes."""
    (out / VOCAB_JSON).write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    config = {"added_tokens_decoder": _added_tokens_decoder(vocab), "backend": "custom", **SPECIALS,
              "model_max_length": NO_LENGTH_LIMIT, "tokenizer_class": class_name}
    write_json_atomic(out / CONFIG_JSON, dict(sorted(config.items())))


def read_word_dir(path: Path, class_name: str) -> dict[str, int]:
    """The vocabulary of a dir ``write_word_dir`` wrote for ``class_name``; TokenizerDirError unless both
    files parse, the config names that class, and every special role's token is in the vocabulary."""
    vocab, config = read_json_part(path / VOCAB_JSON), read_json_part(path / CONFIG_JSON)
    if config.get("tokenizer_class") != class_name:
        raise TokenizerDirError(f"{path / CONFIG_JSON}: tokenizer_class {config.get('tokenizer_class')!r}, not {class_name}")
    missing = [t for t in dict.fromkeys(SPECIALS.values()) if t not in vocab]
    if missing:
        raise TokenizerDirError(f"{path / VOCAB_JSON}: no {', '.join(missing)} among its words")
    return vocab


def encoder(vocab: dict[str, int], segment: Callable[[str], list[str]]) -> Callable[[list[str]], list[list[int]]]:
    """Ids of a batch of lines, no specials added, as the word-level classes give them through transformers:
    a special role's token in the text is its id (transformers splits added tokens out before the class
    segments the rest), the rest ``words_of``, unknown words ``<unk>``."""
    get, unk, space = vocab.get, vocab[SPECIALS["unk_token"]], SPACE_TOKEN in vocab
    specials = sorted(dict.fromkeys(SPECIALS.values()), key=len, reverse=True)
    split = re.compile("(" + "|".join(map(re.escape, specials)) + ")").split

    def ids(line: str) -> list[int]:
        if "<" not in line:  # no special token in it: the common case, one segmentation
            return [get(w, unk) for w in words_of(segment, line, space)]
        out: list[int] = []
        for k, part in enumerate(split(line)):
            if k % 2:
                out.append(vocab[part])
            elif part:
                out.extend(get(w, unk) for w in words_of(segment, part, space))
        return out

    return lambda lines: [ids(s) for s in lines]
