"""Where words start, read once per tokenizer from its own marks: two boolean tables over the vocabulary.

Whole-word masking (train/collator.py) masks a word's pieces together, so it
must know, for each position of a block, whether a new word starts there.
A piece's string says so in every family the tool trains or loads:

=====================================  ==========================================================
family (how it is recognised)          a piece starts a word when
=====================================  ==========================================================
SentencePiece (``sp_model``; a fast    it starts with ``▁`` (SentencePiece's word-start mark)
tokenizer whose normaliser or
pre-tokenizer writes ``▁``)
byte-level BPE (``ByteLevel``          it starts with a whitespace byte (``Ġ`` a space, ``Ċ`` a
pre-tokenizer)                         newline); a piece of newlines or tabs alone also ends one
WordPiece (or a BPE with a             it does NOT start with the continuing prefix (``##``)
continuing-subword prefix)
BPE with an end-of-word suffix         the piece before it ends with the suffix (``</w>``)
word-level (newmm, syllable,           always: every token is a word
fake_sefr_cut, a ``WordLevel`` model)
=====================================  ==========================================================

In every family a special token (and an added token, such as the space
token ``<_>``) is a word of its own, and the piece after it starts a word;
so does a block's first piece, which is why a piece after bos, eos (the line
separator) or any position the collator never masks starts one too.

The tables are context-free (a piece's id alone decides), so the collator
finds a block's word starts with two lookups and a shift, in numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.fast_tokenizer import byte_level_alphabet
from common.format import SPACE_TOKEN  # the users' space token <_>: a word of its own wherever it is
from common.tokenizer_types import SPIECE_UNDERLINE, _WordLevelTokenizer


class WordStartError(ValueError):
    """The tokenizer's pieces carry no mark of where a word starts."""


@dataclass(frozen=True)
class WordMarks:
    """Per id: ``starts`` (this piece begins a word) and ``ends`` (the piece after it begins one); ``rule``
    names the marks read, for the run's record and for errors."""

    starts: np.ndarray
    ends: np.ndarray
    rule: str


_BYTES = byte_level_alphabet()
BYTE_SPACE = _BYTES[ord(" ")]  # Ġ
BYTE_WHITESPACE = frozenset(_BYTES[b] for b in b" \t\n\r\x0b\x0c")


def _kinds(node: Any) -> set[str]:
    """Every ``type`` named anywhere inside a tokenizers component's JSON (a Sequence nests others)."""
    if isinstance(node, dict):
        own = {str(node["type"])} if "type" in node else set()
        return own | {k for v in node.values() for k in _kinds(v)}
    if isinstance(node, list):
        return {k for v in node for k in _kinds(v)}
    return set()


def _fast_rule(tok: Any) -> tuple[str, str]:
    """(rule, argument) for a ``tokenizers``-backed tokenizer, from its model and pre-tokenizer."""
    spec = json.loads(tok.backend_tokenizer.to_str())
    model = spec.get("model") or {}
    kind = model.get("type")
    front = [spec.get("normalizer"), spec.get("pre_tokenizer")]
    if kind == "WordLevel":
        return "word-level", ""
    if kind in ("WordPiece", "BPE") and model.get("continuing_subword_prefix"):
        return "prefix-continues", model["continuing_subword_prefix"]
    if kind == "BPE" and model.get("end_of_word_suffix"):
        return "suffix-ends", model["end_of_word_suffix"]
    if "ByteLevel" in _kinds(front):
        return "byte-level", BYTE_SPACE
    if "Metaspace" in _kinds(front) or SPIECE_UNDERLINE in json.dumps(front, ensure_ascii=False):
        return "prefix-starts", SPIECE_UNDERLINE
    raise WordStartError(f"the tokenizer ({type(tok).__name__}, a {kind} model) has no continuing-subword prefix, "
                         "no end-of-word suffix and no byte-level or SentencePiece pre-tokenizer: its pieces carry no "
                         "mark of where a word starts")


def _rule(tok: Any) -> tuple[str, str]:
    if isinstance(tok, _WordLevelTokenizer):
        return "word-level", ""
    if getattr(tok, "sp_model", None) is not None:
        return "prefix-starts", SPIECE_UNDERLINE
    if getattr(tok, "backend_tokenizer", None) is not None:
        return _fast_rule(tok)
    raise WordStartError(f"the tokenizer ({type(tok).__name__}) is neither SentencePiece, tokenizers-backed (BPE, "
                         "WordPiece, Unigram, WordLevel) nor one of this tool's word-level types: where its words "
                         "start is not known")


def _marks(piece: str, rule: str, arg: str) -> tuple[bool, bool]:
    if rule == "word-level":
        return True, True
    if rule == "prefix-starts":
        return piece.startswith(arg), False
    if rule == "prefix-continues":
        return not piece.startswith(arg), False
    if rule == "suffix-ends":
        return False, piece.endswith(arg)
    # byte-level: a whitespace byte opens a word; newlines and tabs are a pre-token of their own (GPT-2's
    # split pattern joins only a single space to the word after it), so after them a word starts
    only_space = bool(piece) and set(piece) <= BYTE_WHITESPACE
    return piece[:1] in BYTE_WHITESPACE, only_space and piece[-1] != arg


RULE_NAMES = {"word-level": "every token is a word", "prefix-starts": "a piece starting with {arg} starts a word",
              "prefix-continues": "a piece not starting with {arg} starts a word",
              "suffix-ends": "the piece after one ending with {arg} starts a word",
              "byte-level": "a piece starting with a whitespace byte ({arg}) starts a word"}


def word_marks(tok: Any) -> WordMarks:
    """The tokenizer's word-start tables over every id it can produce; WordStartError (saying which
    tokenizer and why) when its pieces carry no word marks."""
    rule, arg = _rule(tok)
    vocab = tok.get_vocab()
    size = max(len(tok), max(vocab.values()) + 1)
    starts, ends = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    for piece, i in vocab.items():
        starts[i], ends[i] = _marks(piece, rule, arg)
    whole = set(tok.all_special_ids) | set(getattr(tok, "get_added_vocab", dict)().values())
    whole |= {vocab[SPACE_TOKEN]} if SPACE_TOKEN in vocab else set()
    whole.discard(tok.unk_token_id)  # <unk> stands for what it replaced: a word ([UNK] in WordPiece) or a piece
    ids = np.array(sorted(i for i in whole if i is not None and 0 <= i < size), dtype=np.int64)
    starts[ids] = ends[ids] = True
    return WordMarks(starts, ends, RULE_NAMES[rule].format(arg=arg))
