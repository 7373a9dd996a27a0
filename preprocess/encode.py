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
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from common.format import OFFSET_DTYPE, SPACE_TOKEN, writer_id
from common.hashing import CHUNK_BYTES
from common.tokenizer import LoadedTokenizer, preprocess_space_token
from preprocess.formats import (
    BAD_EXAMPLES,
    Decompressed,
    Format,
    RecordError,
    parquet_column,
    parquet_texts,
    record_text,
)
from preprocess.sharding import Task, cut_stream

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


def held_out(text: str, fraction: float, seed: int) -> bool:
    """Whether a document (its cleaned lines, joined by newlines) is in the held-out split: a seeded
    hash of its content, so no file order, worker or node count can move it."""
    return xxhash.xxh64_intdigest(text.encode("utf-8", errors="surrogatepass"), seed) < fraction * 2.0**64


def _taken(lines: list[str], starts_open: bool, ends_open: bool, select: tuple[float, int, bool]) -> list[bool]:
    """Whether each line of a text task is in the side of the held-out split ``select`` names."""
    fraction, seed, side = select
    last = len(lines) - 1
    spans = [(i == 0 and starts_open) or (i == last and ends_open) for i in range(len(lines))]
    return [(not side) if span else held_out(line, fraction, seed) == side for line, span in zip(lines, spans)]


def text_lines(text: str, starts_open: bool, ends_open: bool, select: tuple[float, int, bool] | None,
               read_bytes: int) -> tuple[list[str], bool, bool, int]:
    """A text task's lines for encoding (``clean_segments``) in one side of a held-out split
    (``select``: fraction, seed, whether this is the held-out side), their open flags, and the bytes
    of text they stand for (the manifest's ``text_bytes``).

    A ``.txt`` line is a document; a segment of a line cut across tasks (a giant line) cannot be
    hashed whole, so such lines stay in training. Text bytes: ``read_bytes`` (all the text read)
    without a held-out split; with one, the UTF-8 bytes of each line this side took, as cleaned
    (before spaces become the space token), plus its newline.
    """
    space = _STATE["space_token"]
    if select is None:
        return clean_segments(text, space, starts_open, ends_open), starts_open, ends_open, read_bytes
    plain = clean_segments(text, None, starts_open, ends_open)
    lines = [s.replace(" ", space) for s in plain] if space else plain  # = clean_segments(text, space, ...)
    taken = _taken(lines, starts_open, ends_open, select)
    n = sum(len(p.encode("utf-8")) + 1 for p, t in zip(plain, taken) if t)
    side = select[2]
    return [x for x, t in zip(lines, taken) if t], starts_open and not side, ends_open and not side, n


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
    bad_records: int = 0  # records with no usable text (JSON Lines, Parquet) or damaged compressed data
    bad_examples: list[str] = field(default_factory=list)  # the first few, named by file and line or row
    text_bytes: int = 0  # UTF-8 bytes of the text these lines came from (text_lines, _Docs): the manifest's text_bytes
    parts: list[Part] | None = None  # a task read in chunks: each chunk's result, its arrays in ``spill``
    spill: tuple[str, str] | None = None  # (tokens, line lengths) files holding the parts' arrays, in order


@dataclass
class Part:
    """One chunk of a task read in several: its result without arrays, and how long they are."""

    result: TaskResult
    n_tokens: int
    n_lines: int


# Per-process state: set in the parent before the worker pool forks, so every worker inherits it.
_STATE: dict[str, Any] = {}


def set_worker_state(loaded: LoadedTokenizer, encoder: str) -> None:
    """Pick the backend once; ``encode_task`` then only reads this module's state."""
    _STATE.update(worker_state(loaded, encoder))
    _STATE["encode"] = candidate_encoders(loaded.tokenizer)[encoder]


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
    _STATE.update({k: v for k, v in state.items() if k != "backend_json"})
    _STATE["encode"] = lambda lines: [e.ids for e in backend.encode_batch_fast(lines, add_special_tokens=False)]


def _unchanged(task: Task, nbytes: int) -> TaskResult:
    """The result of a task whose bytes are not those the run planned with: nothing encoded."""
    empty = np.empty(0, _STATE["dtype"])
    return TaskResult(task.shard, task.last, nbytes, empty, np.empty(0, OFFSET_DTYPE), 0, 0, changed=True)


def encode_lines(task: Task, lines: list[str], starts_open: bool = False, ends_open: bool = False,
                 nbytes: int = 0, invalid: int = 0, text_bytes: int = 0) -> TaskResult:
    """Encode cleaned lines in batches into one result; ``starts_open``/``ends_open`` as in
    ``clean_segments`` (the first line closes an open one, the last stays open); ``text_bytes``: the
    bytes of text they came from."""
    encode, sep, dtype = _STATE["encode"], _STATE["separator"], _STATE["dtype"]
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
        s, n, d = ids_to_stream(ids, sep, dtype, keep_first=i == 0 and starts_open,
                                open_last=i + BATCH_LINES >= len(lines) and ends_open)
        streams.append(s)
        lengths.append(n)
        dropped += d
    tokens = np.concatenate(streams) if streams else np.empty(0, dtype)
    line_lengths = np.concatenate(lengths) if lengths else np.empty(0, OFFSET_DTYPE)
    return TaskResult(task.shard, task.last, nbytes, tokens, line_lengths, dropped, invalid,
                      unk=unk, unk_examples=examples, open_end=ends_open, text_bytes=text_bytes)


class _Docs:
    """Documents of one chunk: their cleaned lines, and the records that held no text."""

    def __init__(self, task: Task):
        self.task = task
        self.lines: list[str] = []
        self.chars = self.invalid = self.bad = self.text_bytes = 0
        self.examples: list[str] = []

    def add(self, text: str) -> None:
        self.chars += len(text)
        lines = clean_lines(text, _STATE["space_token"])
        if self.task.select is not None:
            fraction, seed, side = self.task.select
            if held_out("\n".join(lines), fraction, seed) != side:
                return
        self.lines += lines
        self.text_bytes += len(text.encode("utf-8", errors="surrogatepass"))  # the document's text as read

    def reject(self, where: str, why: str, count: int = 1) -> None:
        if self.task.select is not None and self.task.select[2]:
            return  # counted once, by the training side
        self.bad += count
        if len(self.examples) < BAD_EXAMPLES:
            self.examples.append(f"{self.task.path}{where}: {why}")

    def result(self, nbytes: int = 0) -> TaskResult:
        r = encode_lines(self.task, self.lines, nbytes=nbytes, invalid=self.invalid, text_bytes=self.text_bytes)
        r.bad_records, r.bad_examples = self.bad, self.examples
        return r


def jsonl_docs(task: Task, data: bytes, first_line: int, docs: _Docs) -> int:
    """Add the records of whole JSON Lines ``data`` (line ``first_line + 1`` first) to ``docs``;
    returns how many lines it held."""
    text, invalid = decode_bytes(data)
    docs.invalid += invalid
    if first_line == 0:
        text = text.removeprefix("\ufeff")  # a byte-order mark before the first record is not JSON
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            try:
                docs.add(record_text(line, task.column))
            except RecordError as e:
                docs.reject(f" line {first_line + i + 1}", str(e))
    return len(lines) - 1 if text.endswith("\n") else len(lines)


class _Chunks:
    """The results of one task read in chunks, as one result: the first in memory, and from the
    second on every chunk's arrays spilled to two files in the split's pieces dir, so neither the
    worker nor the parent holds more than a chunk however big the file (the parent appends them
    in order: build.py)."""

    def __init__(self, task: Task):
        self.task = task
        self.first: TaskResult | None = None
        self.parts: list[Part] = []
        self.files: list[Any] = []

    def add(self, r: TaskResult) -> None:
        if self.first is None and not self.parts and not self.files:
            self.first = r
            return
        if not self.files:
            self._open()
        for r0 in ([self.first] if self.first is not None else []) + [r]:
            self.files[0].write(np.ascontiguousarray(r0.tokens).data)
            self.files[1].write(np.ascontiguousarray(r0.line_lengths, OFFSET_DTYPE).data)
            # fresh empty arrays: a [:0] view would keep every chunk's arrays alive until the task ends
            self.parts.append(Part(replace(r0, tokens=np.empty(0, r0.tokens.dtype),
                                           line_lengths=np.empty(0, OFFSET_DTYPE)),
                                   len(r0.tokens), len(r0.line_lengths)))
        self.first = None

    def _open(self) -> None:
        global _SPILLS
        _SPILLS += 1
        base = Path(self.task.spill_dir) / f"{SPILL_PREFIX}{writer_id()}-{_SPILLS}"
        base.parent.mkdir(parents=True, exist_ok=True)
        self.files = [open(f"{base}.tokens", "wb"), open(f"{base}.lengths", "wb")]

    def result(self, nbytes: int) -> TaskResult:
        if not self.parts:
            r = self.first or encode_lines(self.task, [])
            r.nbytes, r.last = nbytes, self.task.last
            return r
        names = tuple(f.name for f in self.files)
        for f in self.files:
            f.close()
        return replace(encode_lines(self.task, []), nbytes=nbytes, parts=self.parts, spill=names,
                       open_end=self.parts[-1].result.open_end)

    def discard(self) -> None:
        for f in self.files:
            f.close()
            Path(f.name).unlink(missing_ok=True)


def spilled(r: TaskResult, task: Task) -> TaskResult:
    """``r`` with its arrays in chunk files beside the pieces (as a task read in chunks leaves them),
    so only a small record travels: a Ray task's result goes through the object store."""
    if r.spill is not None or r.changed:
        return r
    chunks = _Chunks(task)
    chunks._open()
    chunks.add(r)
    return chunks.result(r.nbytes)


def chunks_of(r: TaskResult, keep: bool = False) -> Iterator[TaskResult]:
    """The results a task's result stands for, in order, arrays in memory: itself, or each of its
    parts with its arrays read back from the spill files (deleted after the last, unless ``keep``:
    a retried assembly must find them again)."""
    if r.spill is None or r.parts is None:
        yield r
        return
    tok_path, len_path = r.spill
    dtype = r.tokens.dtype
    try:
        t = n = 0
        for part in r.parts:
            tokens = np.fromfile(tok_path, dtype=dtype, count=part.n_tokens, offset=t * dtype.itemsize)
            lengths = np.fromfile(len_path, dtype=OFFSET_DTYPE, count=part.n_lines, offset=n * OFFSET_DTYPE.itemsize)
            t, n = t + part.n_tokens, n + part.n_lines
            yield replace(part.result, tokens=tokens, line_lengths=lengths)
    finally:
        if not keep:
            remove_spill(r)


def remove_spill(r: TaskResult) -> None:
    for path in r.spill or ():
        Path(path).unlink(missing_ok=True)


STREAM_READ = 1 << 20  # decompressed bytes a read
SPILL_PREFIX = ".spill-"  # <pieces dir>/.spill-<host>.<pid>-<n>.tokens|.lengths: deleted once appended, or by cleanup
_SPILLS = 0


class _HashingReader:
    """A binary file that hashes the bytes read through it: a compressed shard is checked against its
    digest (of the bytes as stored) in the same read that decompresses it."""

    def __init__(self, f: Any):
        self.f, self.h, self.n, self.closed = f, xxhash.xxh3_128(), 0, False

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.h.update(b)
        self.n += len(b)
        return b

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _stream_task(task: Task) -> TaskResult:
    """A compressed shard, decompressed as a stream and encoded chunk by chunk (``_Chunks``)."""
    chunks = _Chunks(task)
    try:
        with open(task.path, "rb") as f:
            raw = _HashingReader(f)
            stream = Decompressed(raw, task.fmt.codec)
            (_stream_text if task.fmt.kind == "text" else _stream_jsonl)(task, stream, chunks)
            damaged = stream.damage
            while raw.read(CHUNK_BYTES):  # past the last frame: hashed too, the digest is of the whole file
                pass
        if raw.n != task.end - task.start or raw.h.hexdigest() != task.digest:
            chunks.discard()
            return _unchanged(task, raw.n)
        if damaged:
            extra = _Docs(task)
            extra.reject("", f"{damaged}; what came before was kept")
            chunks.add(extra.result())
        return chunks.result(raw.n)
    except BaseException:
        chunks.discard()
        raise


def _stream_text(task: Task, stream: Decompressed, chunks: _Chunks) -> None:
    """Cut the decompressed text as a ``.txt`` file of it is cut (sharding.cut_stream), and encode
    each range: the same ranges give the same ids."""
    buf = bytearray()
    state = {"open": False}

    def on_part(b: bytearray, lo: int, hi: int) -> None:
        buf.extend(memoryview(b)[lo:hi])

    def on_cut(start: int, end: int, is_open: bool) -> None:
        text, invalid = decode_bytes(bytes(buf))
        lines, starts_open, ends_open, n = text_lines(text, state["open"], is_open, task.select, len(buf))
        buf.clear()
        chunks.add(encode_lines(task, lines, starts_open, ends_open, invalid=invalid, text_bytes=n))
        state["open"] = is_open

    cut_stream(stream.readinto, task.task_bytes, lambda v: None, on_part, on_cut, read_bytes=STREAM_READ)
    if buf or state["open"]:
        on_cut(0, 0, False)


def _stream_jsonl(task: Task, stream: Decompressed, chunks: _Chunks) -> None:
    """Decompressed JSON Lines, encoded in chunks of whole records of about the task size."""
    buf, line = bytearray(), 0
    while True:
        data = stream.read(STREAM_READ)
        buf += data
        if len(buf) >= task.task_bytes or not data:
            cut = len(buf) if not data else buf.rfind(b"\n") + 1
            if cut > 0:
                docs = _Docs(task)
                line += jsonl_docs(task, bytes(buf[:cut]), line, docs)
                chunks.add(docs.result())
                del buf[:cut]
        if not data:
            return


def _parquet_task(task: Task) -> TaskResult:
    """Row groups ``[start, end)`` of a Parquet shard, encoded in chunks of about the task size."""
    if _stamp(task.path) != task.stamp:
        return _unchanged(task, 0)
    chunks = _Chunks(task)
    try:
        pf, why = parquet_column(task.path, task.column)
        meta = pf.metadata
        row = sum(meta.row_group(g).num_rows for g in range(task.start))
        docs = _Docs(task)
        if why is not None:
            rows = sum(meta.row_group(g).num_rows for g in range(task.start, task.end))
            if rows:
                docs.reject(f" rows {row}-{row + rows - 1}", why, rows)
        else:
            for values in parquet_texts(pf, task.column, list(range(task.start, task.end))):
                for v in values:
                    if isinstance(v, str):
                        docs.add(v)
                    else:
                        docs.reject(f" row {row}", f"{task.column!r} is null")
                    row += 1
                if docs.chars >= task.task_bytes:
                    chunks.add(docs.result())
                    docs = _Docs(task)
        chunks.add(docs.result())
        if _stamp(task.path) != task.stamp:
            chunks.discard()
            return _unchanged(task, 0)
        return chunks.result(sum(meta.row_group(g).column(k).total_compressed_size  # the progress bar's bytes
                                 for g in range(task.start, task.end) for k in range(meta.num_columns)))
    except BaseException:
        chunks.discard()
        raise


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def encode_task(task: Task) -> TaskResult:
    """Read one task's text, clean its lines and encode them in batches.

    The bytes are encoded only if they hash to the digest the run planned
    with: a file rewritten or truncated mid-run must never end up stored
    under the digest of other bytes (Parquet: its size and time stamp).
    """
    if task.fmt.kind == "parquet":
        return _parquet_task(task)
    if task.fmt.codec:
        return _stream_task(task)
    with open(task.path, "rb") as f:
        f.seek(task.start)
        raw = f.read(task.end - task.start)
    if len(raw) != task.end - task.start or xxhash.xxh3_128_hexdigest(raw) != task.digest:
        return _unchanged(task, len(raw))
    nbytes = len(raw)
    if task.fmt.kind == "jsonl":
        docs = _Docs(task)
        jsonl_docs(task, raw, task.line_start, docs)
        return docs.result(nbytes)
    text, invalid = decode_bytes(raw)
    del raw
    lines, starts_open, ends_open, n = text_lines(text, task.starts_open, task.ends_open, task.select, nbytes)
    del text
    return encode_lines(task, lines, starts_open, ends_open, nbytes, invalid, text_bytes=n)


def sample_lines(path: str | Path, fmt: Format, column: str, nbytes: int) -> list[str]:
    """The cleaned lines of about the first ``nbytes`` of a shard's text: real text for the encoder check."""
    docs: list[str] = []
    try:
        if fmt.kind == "parquet":
            pf, why = parquet_column(path, column)
            if why is None and pf.metadata.num_row_groups:
                docs = [v for v in next(parquet_texts(pf, column, [0]), []) if isinstance(v, str)]
        else:
            with open(path, "rb") as f:
                head = Decompressed(f, fmt.codec).read(nbytes) if fmt.codec else f.read(nbytes)
            text = head.decode("utf-8", errors="replace")
            if fmt.kind == "text":
                docs = [text]
            for line in text.split("\n")[:-1] if fmt.kind == "jsonl" else []:
                try:
                    docs.append(record_text(line, column))
                except RecordError:
                    pass
    except OSError:  # damaged: the run counts it; the probe lines still check the encoder
        return []
    out: list[str] = []
    for d in docs:
        out += clean_lines(d)
        if sum(map(len, out)) >= nbytes:
            break
    return out
