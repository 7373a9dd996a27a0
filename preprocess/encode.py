"""Text -> token ids in worker processes, through the fastest backend that gives the same ids.

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

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from common.format import OFFSET_DTYPE, SPACE_TOKEN
from common.tokenizer import LoadedTokenizer, preprocess_space_token
from preprocess.sharding import Task

Encoder = Callable[[list[str]], list[list[int]]]
BATCH_LINES = 1024
UNK_EXAMPLES = 3
ENCODE_CHARS = 1 << 16  # a longer line is encoded in pieces of at most this many characters
CLEANING = {
    "newlines": ["\\n", "\\r\\n", "\\r"],
    "strip": "str.strip",
    "drop_empty": True,
    "drop_lines_without_tokens": True,
    "invalid_utf8": "replace with U+FFFD",
    "long_lines": "cut before a space, else at a character, where no newline comes within 2 x --task_size_mb; "
                  "encoded in pieces of <= 65536 characters cut the same way",
}

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


def clean_lines(text: str, space_token: str | None = None) -> list[str]:
    """The original builder's cleaning: universal newlines, ``str.strip``, drop empty lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = [s for s in (line.strip() for line in lines) if s]
    if space_token:
        out = [s.replace(" ", space_token) for s in out]
    return out


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
        for x in encode(_pieces(line, cut_before)):  # 64 K characters a piece: a few MB a call
            ids.extend(x)
        out.append(ids)
    return out


def clean_segments(text: str, space_token: str | None, starts_open: bool, ends_open: bool) -> list[str]:
    """``clean_lines`` of a task's text, where the text may begin or end inside a line (sharding.py).

    A segment that continues the previous task's line keeps its leading
    spaces, one the next task continues keeps its trailing ones, and both
    are kept even when empty (the first closes the open line, the last keeps
    it open): joined back, the segments of a line are the line ``clean_lines``
    gives. ``space_token`` as there.
    """
    parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    last, out = len(parts) - 1, []
    for k, part in enumerate(parts):
        head, tail = k == 0 and starts_open, k == last and ends_open
        cleaned = part if head and tail else part.rstrip() if head else part.lstrip() if tail else part.strip()
        if cleaned or head or tail:
            out.append(cleaned.replace(" ", space_token) if space_token else cleaned)
    return out


def decode_bytes(raw: bytes) -> tuple[str, int]:
    """UTF-8 text and how many invalid byte sequences were replaced with U+FFFD."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        # U+FFFD genuinely in the input is EF BF BD; every other one is a replacement.
        return text, text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")


def ids_to_stream(ids: list[list[int]], separator: int, dtype: np.dtype, keep_first: bool = False,
                  open_last: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(token stream with a separator after each line, per-line lengths incl. separator, lines dropped).

    Lines that encode to no ids are dropped (they would be a bare separator),
    except a first line that closes an open one (``keep_first``) and a last
    line left open (``open_last``: no separator, its length without one).
    """
    n = len(ids)
    keep = [len(x) > 0 or (i == 0 and keep_first) or (i == n - 1 and open_last) for i, x in enumerate(ids)]
    kept = [x for x, k in zip(ids, keep) if k]
    lens = np.fromiter((len(x) for x in kept), dtype=OFFSET_DTYPE, count=len(kept))
    flat = np.fromiter(itertools.chain.from_iterable(kept), dtype=dtype, count=int(lens.sum()))
    ends = np.cumsum(lens)
    closed = len(kept) - 1 if open_last and kept else len(kept)
    stream = np.insert(flat, ends[:closed], np.array(separator, dtype=dtype))
    lengths = lens + 1
    if closed < len(kept):
        lengths[-1] -= 1
    return stream, lengths, n - len(kept)


@dataclass
class TaskResult:
    shard: int
    last: bool
    nbytes: int
    tokens: np.ndarray  # token stream of the task's lines, separators included
    line_lengths: np.ndarray  # int64, tokens per line incl. its separator (the open last one: without)
    lines_without_tokens: int
    invalid_utf8: int
    unk: int = 0  # ids of the unknown token among ``tokens``
    unk_examples: list[str] = field(default_factory=list)  # the first few lines holding one, cut to 100 characters
    changed: bool = False  # the bytes read differ from those the run planned with: nothing was encoded
    open_end: bool = False  # the last line continues in the next task's result: it has no separator yet


# Per-process state: set in the parent before the worker pool forks, so every worker inherits it.
_STATE: dict[str, Any] = {}


def set_worker_state(loaded: LoadedTokenizer, encoder: str) -> None:
    """Pick the backend once; ``encode_task`` then only reads this module's state."""
    _STATE["encode"] = candidate_encoders(loaded.tokenizer)[encoder]
    _STATE["separator"] = loaded.separator_id
    _STATE["dtype"] = np.dtype(loaded.identity.dtype)
    _STATE["space_token"] = SPACE_TOKEN if preprocess_space_token(loaded.identity) else None
    _STATE["unk"] = loaded.identity.special_ids.unk


def encode_task(task: Task) -> TaskResult:
    """Read one byte range, clean its lines and encode them in batches.

    The bytes are encoded only if they hash to the digest the run planned
    with: a file rewritten or truncated mid-run must never end up stored
    under the digest of other bytes.
    """
    with open(task.path, "rb") as f:
        f.seek(task.start)
        raw = f.read(task.end - task.start)
    dtype = _STATE["dtype"]
    if len(raw) != task.end - task.start or xxhash.xxh3_128_hexdigest(raw) != task.digest:
        empty = np.empty(0, dtype)
        return TaskResult(task.shard, task.last, len(raw), empty, np.empty(0, OFFSET_DTYPE), 0, 0, changed=True)
    text, invalid = decode_bytes(raw)
    del raw
    lines = clean_segments(text, _STATE["space_token"], task.starts_open, task.ends_open)
    del text
    encode, sep = _STATE["encode"], _STATE["separator"]
    cut_before = (" ", "\t", *([_STATE["space_token"]] if _STATE["space_token"] else []))
    streams, lengths, dropped, unk, examples = [], [], 0, 0, []
    for i in range(0, len(lines), BATCH_LINES):
        ids = encode_bounded(encode, lines[i : i + BATCH_LINES], cut_before)
        if _STATE["unk"] is not None:
            for line, x in zip(lines[i : i + BATCH_LINES], ids):
                k = x.count(_STATE["unk"]) if isinstance(x, list) else list(x).count(_STATE["unk"])
                unk += k
                if k and len(examples) < UNK_EXAMPLES:
                    examples.append(line[:100])
        s, n, d = ids_to_stream(ids, sep, dtype, keep_first=i == 0 and task.starts_open,
                                open_last=i + BATCH_LINES >= len(lines) and task.ends_open)
        streams.append(s)
        lengths.append(n)
        dropped += d
    tokens = np.concatenate(streams) if streams else np.empty(0, dtype)
    line_lengths = np.concatenate(lengths) if lengths else np.empty(0, OFFSET_DTYPE)
    return TaskResult(task.shard, task.last, task.end - task.start, tokens, line_lengths, dropped, invalid,
                      unk=unk, unk_examples=examples, open_end=task.ends_open)
