"""The encoder: the fastest backend that gives transformers' ids, chosen once and held by every worker.

Backends, fastest first (bench/preprocess_bench.py, 2 cores, 50 MB; see README):

* ``native``: ``encode_batch_native`` of our own tokenizer classes
  (common/tokenizer_types.py): the model's encoder without transformers'
  per-call overhead.
* ``sentencepiece``: ``SentencePieceProcessor.encode`` of a SentencePiece-backed
  slow tokenizer, 3.4x its transformers wrapper.
* ``tokenizers``: a fast tokenizer's ``backend_tokenizer.encode_batch_fast``
  (no offsets), 1.4x ``tokenizer(batch)``.
* ``transformers``: ``tokenizer(batch, add_special_tokens=False)``, the
  reference every other backend is checked against (``check_encoder``).

With ``native`` and ``sentencepiece``, lines that contain an added token's
string go through the reference, which splits those tokens out first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from common.errors import UserError
from common.format import SPACE_TOKEN
from common.tokenizer import (
    LoadedTokenizer,
    TokenizerError,
    load_tokenizer,
    preprocess_space_token,
    tokenizer_source,
)
from preprocess.config import PreprocessConfig

Encoder = Callable[[list[str]], list[list[int]]]
ENCODE_CHARS = 1 << 16  # a longer line is encoded in pieces of at most this many characters

# Varied text the backends must agree on before we trust them with a corpus.
PROBE_LINES = [
    "Hello, world! This is a test.",
    "  leading and trailing spaces  ",
    "UPPER lower MiXeD 12345 3.14159 1,000,000",
    "ภาษาไทยเป็นภาษาที่สวยงาม สวัสดีครับ",
    "日本語のテキスト、中文文本。한국어",
    "emoji 🤗🚀 and symbols ©®™ € £ ¥ § ¶",
    "tabs\tand\u00a0non-breaking\u3000spaces",
    "a" * 300,
    "don't can't won't it's o'clock",
    "e-mail: someone@example.com https://example.com/a?b=c",
    "accents: café naïve résumé Ångström",
    "\ufffd replacement char",
]


def reference_encoder(tok: Any) -> Encoder:
    def encode(lines: list[str]) -> list[list[int]]:
        return tok(lines, add_special_tokens=False)["input_ids"]

    return encode


def _added_token_strings(tok: Any) -> list[str]:
    return [t for t in tok.get_added_vocab() if t]


def _with_added_tokens(tok: Any, encode: Encoder) -> Encoder:
    """``encode``, except that lines containing an added token's string go through the
    transformers reference, which splits those tokens out before the model sees the text."""
    added = _added_token_strings(tok)
    if not added:
        return encode
    ref = reference_encoder(tok)

    def routed(lines: list[str]) -> list[list[int]]:
        special = [i for i, s in enumerate(lines) if any(a in s for a in added)]
        if not special:
            return encode(lines)
        ids: list[list[int]] = [[] for _ in lines]
        taken = set(special)
        plain = [i for i in range(len(lines)) if i not in taken]
        for group, fn in ((plain, encode), (special, ref)):
            for i, x in zip(group, fn([lines[i] for i in group]) if group else []):
                ids[i] = x
        return ids

    return routed


def candidate_encoders(tok: Any) -> dict[str, Encoder]:
    """Every backend this tokenizer offers, fastest first; ``transformers`` always last."""
    out: dict[str, Encoder] = {}
    native = getattr(tok, "encode_batch_native", None)
    if callable(native):  # our own classes (common/tokenizer_types.py)
        out["native"] = _with_added_tokens(tok, native)
    sp = getattr(tok, "sp_model", None)
    if sp is not None and hasattr(sp, "encode"):
        out["sentencepiece"] = _with_added_tokens(tok, sp.encode)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):

        def encode_fast(lines: list[str]) -> list[list[int]]:
            return [e.ids for e in backend.encode_batch_fast(lines, add_special_tokens=False)]

        out["tokenizers"] = encode_fast
    out["transformers"] = reference_encoder(tok)
    return out


def check_encoder(tok: Any, encode: Encoder, lines: Sequence[str]) -> list[str]:
    """Lines on which ``encode`` and the transformers reference disagree (empty list: they agree)."""
    lines = list(lines)
    ref = reference_encoder(tok)(lines)
    got = encode(lines)
    return [s for s, a, b in zip(lines, ref, got) if list(a) != list(b)]


def choose_encoder(tok: Any, sample: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The fastest backend that gives the reference's ids on the probe lines and ``sample``.

    Returns its name and, for the log, the backends rejected with the reason.
    """
    probe = [*PROBE_LINES, *_added_token_strings(tok), " ".join(_added_token_strings(tok)) + " x", *sample]
    probe = [s for s in probe if s.strip()]
    rejected: list[str] = []
    for name, encode in candidate_encoders(tok).items():
        if name == "transformers":
            return name, rejected
        bad = check_encoder(tok, encode, probe)
        if not bad:
            return name, rejected
        rejected.append(f"{name} (differs on {len(bad)} probe lines, e.g. {bad[0][:60]!r})")
    raise AssertionError("unreachable: the transformers encoder is always a candidate")


def ids_problem(tok: Any, lines: Sequence[str], unk: int | None) -> str | None:
    """Why a tokenizer is useless on ``lines`` (the corpus's first lines; probe text for an empty one): none of them
    encodes to an id other than the unknown one (an empty vocabulary, a model dir's stand-in
    tokenizer, a vocabulary of other text). None if any line does."""
    lines = [s for s in lines if s.strip()]
    ids = reference_encoder(tok)(lines) if lines else []
    if not lines or any(any(i != unk for i in x) for x in ids):
        return None
    but = "" if unk is None else f" other than the unknown token {tok.convert_ids_to_tokens(unk)!r} ({unk})"
    first = next((i for i, x in enumerate(ids) if len(x)), 0)  # a line with ids shows which; else the first
    line, got = lines[first], list(ids[first])
    return (f"encodes none of {len(lines)} sample lines (the corpus's first lines) to any id{but}, "
            f"e.g. {line[:80]!r} -> {got[:10]}{' ...' if len(got) > 10 else ''}")


def _pieces(line: str, cut_before: tuple[str, ...]) -> list[str]:
    """``line`` in consecutive pieces of at most ENCODE_CHARS characters, each cut just before the
    last of ``cut_before`` that fits (a space, where tokenizers split anyway), else at the limit."""
    out, start = [], 0
    while len(line) - start > ENCODE_CHARS:
        limit = start + ENCODE_CHARS
        at = max(line.rfind(c, start + 1, limit) for c in cut_before)
        end = at if at > start else limit
        out.append(line[start:end])
        start = end
    out.append(line[start:])
    return out


def bounded_pieces(line: str, cut_before: tuple[str, ...] = (" ", "\t")) -> list[str]:
    """What ``encode_bounded`` hands ``encode`` of ``line``: the line, or its pieces when it is longer than
    ENCODE_CHARS (mlm-train-tokenizer's word-level count workers segment these for the report)."""
    return [line] if len(line) <= ENCODE_CHARS else _pieces(line, cut_before)


def encode_bounded(encode: Encoder, lines: list[str], cut_before: tuple[str, ...] = (" ", "\t")) -> list[list[int]]:
    """``encode(lines)``, with every line longer than ENCODE_CHARS encoded in pieces (``_pieces``)
    and its ids joined: a tokenizer's memory grows with the string it is given (tens of bytes a
    character), so one giant line would otherwise take gigabytes. Ids can differ from the whole
    line's only where a piece was cut at the limit, inside a word with no space near."""
    if all(len(x) <= ENCODE_CHARS for x in lines):
        return encode(lines)
    out: list[list[int]] = []
    for line in lines:
        if len(line) <= ENCODE_CHARS:
            out.extend(encode([line]))
            continue
        ids: list[int] = []
        for x in encode(bounded_pieces(line, cut_before)):  # 64 K characters a piece: a few MB a call
            ids.extend(x)
        out.append(ids)
    return out


# Per-process state: set in the parent before the worker pool forks, so every worker inherits it.
STATE: dict[str, Any] = {}


def set_worker_state(loaded: LoadedTokenizer, encoder: str) -> None:
    """Pick the backend once; ``encode_task`` then only reads this module's state."""
    STATE.update(worker_state(loaded, encoder))
    STATE["encode"] = candidate_encoders(loaded.tokenizer)[encoder]


def worker_state(loaded: LoadedTokenizer, encoder: str) -> dict[str, Any]:
    """What encoding needs besides the encoder, picklable; with the ``tokenizers`` backend also that
    backend as JSON, from which a process on another node rebuilds the very same encoder in
    milliseconds, without importing transformers (``set_state``)."""
    state: dict[str, Any] = {
        "separator": loaded.separator_id,
        "dtype": np.dtype(loaded.identity.dtype),
        "space_token": SPACE_TOKEN if preprocess_space_token(loaded.identity) else None,
        "unk": loaded.identity.special_ids.unk,
    }
    if encoder == "tokenizers":
        state["backend_json"] = loaded.tokenizer.backend_tokenizer.to_str()
    return state


def set_state(state: dict[str, Any]) -> None:
    """``set_worker_state`` from ``worker_state``'s picklable result (``backend_json`` required)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(state["backend_json"])
    STATE.update({k: v for k, v in state.items() if k != "backend_json"})
    STATE["encode"] = lambda lines: [e.ids for e in backend.encode_batch_fast(lines, add_special_tokens=False)]


def load_encoder(cfg: PreprocessConfig, sample: list[str], planned: str) -> tuple[LoadedTokenizer, str]:
    """Load the tokenizer and pick its encoder backend.

    ``planned`` is the tokenizer digest every cache key of this run was made
    from; the files are hashed again once the tokenizer is loaded, so tokens
    of a tokenizer edited meanwhile are never stored under the old one's keys.
    """
    try:
        loaded = load_tokenizer(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
        after = tokenizer_source(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
    except TokenizerError as e:
        raise UserError(str(e)) from None
    if not loaded.identity.digest == after.digest == planned:
        raise UserError(f"--tokenizer_name_or_path {cfg.tokenizer_name_or_path}: its files changed while this run "
                        "read them; nothing was tokenized. Rerun once nothing writes to them.")
    missing = [role for role in ("mask", "pad") if getattr(loaded.identity.special_ids, role) is None]
    if missing:  # found here, not after the GPU hours of setting up a training run
        raise UserError(f"--tokenizer_name_or_path {cfg.tokenizer_name_or_path}: the tokenizer has no "
                        f"{' and no '.join(missing)} token, which masked-LM training needs; add it (e.g. "
                        f"tok.add_special_tokens({{{', '.join(repr(r + '_token') + ': ' + repr('<' + r + '>') for r in missing)}}}) "
                        "then tok.save_pretrained(dir)) and pass that dir")
    if cfg.add_space_token and SPACE_TOKEN not in loaded.tokenizer.get_vocab():
        raise UserError(
            f"--add_space_token: the tokenizer at {cfg.tokenizer_name_or_path} has no {SPACE_TOKEN!r} token; "
            "add it to the vocabulary or drop the flag"
        )
    if preprocess_space_token(loaded.identity):
        sample = [s.replace(" ", SPACE_TOKEN) for s in sample]
    # the corpus's own lines: the probe text is Latin, so a Latin vocabulary would always pass on Thai text
    problem = ids_problem(loaded.tokenizer, [s for s in sample if s.strip()] or PROBE_LINES,
                          loaded.identity.special_ids.unk)
    if problem:  # else the run "succeeds" with a cache of no tokens, or of nothing but <unk>
        t = loaded.identity
        raise UserError(f"--tokenizer_name_or_path {cfg.tokenizer_name_or_path} (--tokenizer_type {t.type}, "
                        f"{t.class_name}, {t.vocab_size:,} ids) {problem}; a cache of it would hold nothing to "
                        "learn: pass the tokenizer made for this text")
    encoder, rejected = choose_encoder(loaded.tokenizer, sample)
    for r in rejected:
        print(f"note: encoder backend {r}; using a slower one that matches transformers", file=sys.stderr)
    return loaded, encoder
