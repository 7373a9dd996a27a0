"""How well a tokenizer fits each corpus, measured on held-out lines: the report ``mlm-train-tokenizer``
prints at the end and saves beside the tokenizer (``tokenizer_report.json``).

Per corpus and tokenizer (``measure``):

    unit                 "word" or "100 chars", decided from the text alone (``unit_of``), so the
                         same for every tokenizer compared on that corpus
    tokens_per_unit      tokens / words, or 100 x tokens / characters
    unk_rate             share of the tokens that are the unknown-token id
    byte_fallback_share  share of the tokens that stand for bytes, not whole characters (``byte_ids``)
    lines, characters, words, tokens   the counts behind them (tokens: no special tokens added)

The JSON (``write``): ``{"tokenizers": [label, ...], "corpora": {corpus: {label: measures}}}``, the
tokenizer just trained first, under the label ``TRAINED``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.fast_tokenizer import FastDir, byte_level_alphabet
from common.json_files import write_json_atomic
from common.tokenizer import Flags, TokenizerError, load_tokenizer
from common.word_level import SPECIALS
from common.word_level import encoder as word_encoder
from preprocess.encoder import Encoder, candidate_encoders, choose_encoder, encode_bounded

TRAINED = "trained"  # the label of the tokenizer the report is about
BATCH_LINES = 1024  # lines encoded per call: memory bounded by a batch's ids, not the held-out part's
# Scripts written without spaces between words: Thai, Lao, Tibetan, Myanmar, Khmer, kana, CJK ideographs.
NO_SPACE_SCRIPTS = re.compile("[\u0e00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                              "\uf900-\ufaff]+")
SPACED = 20  # at least one space per this many other characters: a text whose words are spaced
_SENTENCEPIECE_BYTE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def unit_of(lines: list[str]) -> str:
    """``"100 chars"`` when most non-space characters are of a script written without spaces
    (``NO_SPACE_SCRIPTS``: a Thai or Japanese "word" between spaces is a phrase), or when there are
    fewer than one whitespace run per ``SPACED`` non-space characters; else ``"word"`` (a
    whitespace-separated word)."""
    solid = gaps = no_space = 0
    for line in lines:
        words = line.split()
        solid += sum(map(len, words))
        gaps += max(len(words) - 1, 0)
        no_space += sum(map(len, NO_SPACE_SCRIPTS.findall(line)))
    return "100 chars" if 2 * no_space > solid or gaps * SPACED < solid else "word"


def _byte_alphabet() -> dict[str, int]:
    """Byte-level BPE's alphabet, character -> the byte it stands for."""
    return {c: b for b, c in byte_level_alphabet().items()}


def _is_byte_level(backend: Any) -> bool:
    """Whether a ``tokenizers.Tokenizer``'s pre-tokenizer or decoder (alone or in a Sequence) is ByteLevel:
    read from their own JSON, not the whole tokenizer's (its vocabulary and merges, a tenth of a second
    to parse)."""
    if backend is None:
        return False
    parts = (backend.pre_tokenizer, backend.decoder)
    return any(part is not None and b'"type":"ByteLevel"' in part.__getstate__() for part in parts)


def byte_ids(tok: Any) -> np.ndarray:
    """Which ids of a transformers tokenizer are byte-fallback tokens, as a bool array indexed by id
    (``byte_flags``)."""
    return byte_flags(tok.get_vocab(), set(tok.all_special_ids), _is_byte_level(getattr(tok, "backend_tokenizer", None)))


def byte_flags(vocab: dict[str, int], special: set[int], byte_level: bool) -> np.ndarray:
    """Which ids are byte-fallback tokens, as a bool array indexed by id.

    A byte-fallback token stands for bytes rather than whole characters: a SentencePiece byte piece
    (``<0xE0>``), or, in a byte-level BPE vocabulary, a token whose bytes are not valid UTF-8 on their
    own (a lone byte of a multi-byte character, or a piece that cuts through one). Special tokens never are.
    """
    out = np.zeros(max(vocab.values(), default=-1) + 1, dtype=bool)
    alphabet = _byte_alphabet() if byte_level else None
    for token, i in vocab.items():
        if i in special:
            continue
        if _SENTENCEPIECE_BYTE.fullmatch(token):
            out[i] = True
        elif alphabet is not None and all(c in alphabet for c in token):
            try:
                bytes(alphabet[c] for c in token).decode("utf-8")
            except UnicodeDecodeError:
                out[i] = True
    return out


@dataclass(frozen=True)
class Subject:
    """What the report needs of a tokenizer: an encoder (no special tokens added), its unknown id, and
    which ids stand for bytes."""

    encode: Encoder
    unk: int | None
    is_byte: np.ndarray


def subject(tokenizer: Any, sample: list[str]) -> Subject:
    """A transformers tokenizer's ``Subject``: the fastest backend that gives transformers' ids on
    ``sample`` (preprocess/encoder.py), as the cache's."""
    name, _ = choose_encoder(tokenizer, sample)
    return Subject(candidate_encoders(tokenizer)[name], tokenizer.unk_token_id, byte_ids(tokenizer))


def fast_subject(fast: FastDir) -> Subject:
    """A tokenizers-backed dir's ``Subject``, without transformers: its tokenizer's own batch encoder,
    which is what transformers' ``PreTrainedTokenizerFast`` calls (tested to give its ids)."""
    tok = fast.tokenizer

    def encode(lines: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch_fast(lines, add_special_tokens=False)]

    return Subject(encode, fast.role_id("unk_token"), byte_flags(tok.get_vocab(), fast.special_ids, _is_byte_level(tok)))


def _share(part: int, whole: int, scale: float = 1.0) -> float | None:
    """``part / whole`` scaled; None (JSON null, "-" in the table) when there is nothing to measure: a
    corpus too small to hold out a line has no figures, not figures of 0."""
    return scale * part / whole if whole else None


def word_subject(vocab: dict[str, int], segment: Any) -> Subject:
    """A word-level dir's ``Subject``, without transformers: common/word_level.py's encoder, the ids its
    class gives (tested)."""
    special = {vocab[t] for t in SPECIALS.values()}
    return Subject(word_encoder(vocab, segment), vocab[SPECIALS["unk_token"]], byte_flags(vocab, special, False))


def measure(tok: Subject, lines: list[str]) -> dict[str, Any]:
    """The measures of the module docstring for ``tok`` on ``lines`` (held-out lines of one corpus)."""
    tokens = unks = fallback = 0
    for start in range(0, len(lines), BATCH_LINES):
        ids = encode_bounded(tok.encode, lines[start:start + BATCH_LINES])
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64)
        tokens += flat.size
        unks += int((flat == tok.unk).sum()) if tok.unk is not None else 0
        fallback += int(tok.is_byte[flat[flat < tok.is_byte.size]].sum())
    unit = unit_of(lines)
    characters, words = sum(map(len, lines)), sum(len(s.split()) for s in lines)
    per_unit = _share(tokens, words) if unit == "word" else _share(tokens, characters, 100.0)
    return {"unit": unit, "tokens_per_unit": per_unit, "unk_rate": _share(unks, tokens),
            "byte_fallback_share": _share(fallback, tokens),
            "lines": len(lines), "characters": characters, "words": words, "tokens": tokens}


def probe_sample(held_out: dict[str, list[str]]) -> list[str]:
    """Every corpus's first held-out lines: what a transformers tokenizer's encoder is checked on, once
    for every corpus."""
    return [s for lines in held_out.values() for s in lines[:32]]


def report(held_out: dict[str, list[str]], trained: Subject, compare: tuple[str, Subject] | None = None) -> dict[str, Any]:
    """The measures of ``trained`` (labelled ``TRAINED``) on each corpus of ``held_out`` (one corpus:
    a single key), and, with ``compare=(label, other)``, those of ``other`` beside them."""
    subjects = [(TRAINED, trained)]
    if compare is not None:
        label = compare[0] if compare[0] != TRAINED else f"{TRAINED} (compared)"
        subjects.append((label, compare[1]))
    corpora = {name: {label: measure(tok, lines) for label, tok in subjects} for name, lines in held_out.items()}
    return {"tokenizers": [label for label, _ in subjects], "corpora": corpora}


# (header, format); the text columns (corpus, tokenizer, unit) are left-aligned, the numbers right-aligned.
_COLUMNS = (("corpus", None), ("tokenizer", None), ("tokens per", "{:.2f}"), ("unit", None),
            ("unk %", "{:.3f}"), ("byte fallback %", "{:.3f}"), ("lines", "{:,}"), ("tokens total", "{:,}"))


def table(rep: dict[str, Any]) -> str:
    """``rep`` as aligned plain text: a header, then one row per corpus and tokenizer."""
    rows = [[c for c, _ in _COLUMNS]]
    for corpus, by_tokenizer in rep["corpora"].items():
        for label in rep["tokenizers"]:
            m = by_tokenizer[label]
            pct = [None if m[k] is None else 100 * m[k] for k in ("unk_rate", "byte_fallback_share")]
            values = [corpus, label, m["tokens_per_unit"], m["unit"], *pct, m["lines"], m["tokens"]]
            rows.append(["-" if v is None else fmt.format(v) if fmt else str(v) for (_, fmt), v in zip(_COLUMNS, values)])
    widths = [max(len(r[k]) for r in rows) for k in range(len(_COLUMNS))]
    lines = []
    for r in rows:
        cells = [v.ljust(w) if k in (0, 1, 3) else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def write(rep: dict[str, Any], path: Path) -> None:
    """``rep`` as JSON at ``path`` (``<out>/tokenizer_report.json``), keys sorted, written atomically."""
    write_json_atomic(Path(path), json.loads(json.dumps(rep, sort_keys=True)))


def load_for_compare(path: str, tokenizer_type: str = "auto") -> tuple[str, Any]:
    """``--compare_with PATH``: its label (the path as given) and the tokenizer (``subject`` makes it
    measurable once the sample is drawn); a one-line UserError when it does not load."""
    try:
        return path, load_tokenizer(path, tokenizer_type, flags=Flags("--compare_with", "--compare_type")).tokenizer
    except TokenizerError as e:
        raise UserError(str(e)) from e
