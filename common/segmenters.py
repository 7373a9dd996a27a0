"""The word segmenters of the word-level ``--tokenizer_type``s, apart from their tokenizer classes: what
``mlm-train-tokenizer`` counts words with, without importing transformers (common/tokenizer_types.py's
classes segment with these same functions)."""

from __future__ import annotations

from collections.abc import Callable


def _pythainlp():
    try:
        from pythainlp import tokenize
    except ImportError as e:
        raise ImportError("the Thai word-level tokenizers need PyThaiNLP: pip install pythainlp") from e
    return tokenize


def segment_newmm(text: str) -> list[str]:
    """Words by PyThaiNLP's dictionary-based ``newmm`` (offline, bundled dictionary)."""
    return _pythainlp().word_tokenize(text, engine="newmm", keep_whitespace=True)


def segment_syllable(text: str) -> list[str]:
    """Thai syllables by PyThaiNLP's dictionary-based syllable segmenter (offline)."""
    return _pythainlp().syllable_tokenize(text, engine="dict", keep_whitespace=True)


def segment_presplit(text: str) -> list[str]:
    """Text already segmented with ``<|>`` between words."""
    return text.split("<|>")


# By --tokenizer_type (common/tokenizer.py's TOKENIZER_TYPES): each word-level class's segmenter.
SEGMENTERS: dict[str, Callable[[str], list[str]]] = {
    "newmm": segment_newmm, "syllable": segment_syllable, "fake_sefr_cut": segment_presplit}
