"""The input formats, chosen by each shard's extension, and how each is read into documents.

Every format ends as *documents* (a ``.txt`` line, a JSON Lines record's
text, a Parquet row's text) that go through the same cleaning as a
``.txt`` file's text (cleaning.py: ``clean_lines``), so the same
text gives the same token arrays whichever format holds it.

* ``txt`` (any extension we do not know is text too), ``txt.gz``, ``txt.zst``
* ``jsonl``/``json``/``ndjson``, each also ``.gz``/``.zst``: one JSON object a
  line, its text in ``--text_column``
* ``parquet``: its text in ``--text_column``; no other column is read

``--ext txt,jsonl.zst,parquet`` lists several: one split may mix formats,
each file read by the longest listed extension its name ends with
(``PreprocessConfig.format_of``).

Uncompressed text and JSON Lines are cut into newline-aligned byte ranges,
Parquet into runs of row groups; a compressed file cannot be cut, so it is
one task that streams (``Decompressed``: zlib for gzip, zstandard for zstd,
members or frames concatenated or not). pyarrow is imported only for a
Parquet shard: a ``.txt`` run never pays for it.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

if TYPE_CHECKING:
    from preprocess.tasks import Task

from common.errors import UserError
from common.hashing import CHUNK_BYTES
from preprocess.cleaning import clean_lines, decode_bytes, held_out, text_lines
from preprocess.ranges import cut_stream

CODECS = {"gz": "gzip", "gzip": "gzip", "zst": "zstd", "zstd": "zstd"}
JSONL_NAMES = ("jsonl", "json", "ndjson")
CODEC_MAGIC = {"gzip": (b"\x1f\x8b",), "zstd": (b"\x28\xb5\x2f\xfd",)}
BAD_EXAMPLES = 3  # bad records named in the warning, per task


@dataclass(frozen=True)
class Format:
    kind: str  # "text" | "jsonl" | "parquet"
    codec: str | None = None  # "gzip" | "zstd"

    @property
    def ranges(self) -> bool:
        """Cut into byte ranges (uncompressed text and JSON Lines)."""
        return self.codec is None and self.kind != "parquet"

    @property
    def records(self) -> bool:
        """Documents come from a column of records, not from lines of text."""
        return self.kind != "text"


TEXT = Format("text")


def format_of(ext: str) -> Format:
    """The format of files named ``*.<ext>``: the last part names a codec, if any, the part before it
    the container; an extension we do not know is text (users name shards .txt, .text, .th ...).
    Resolved once, by the config (``PreprocessConfig.formats``); the pipeline is handed the result."""
    parts = ext.lower().split(".")
    codec = CODECS.get(parts[-1]) if len(parts) > 1 or parts[-1] in CODECS else None
    base = parts[-2] if codec and len(parts) > 1 else (parts[-1] if not codec else "")
    if base == "parquet":
        if codec:
            raise UserError(f"--ext {ext}: Parquet compresses inside the file; name the shards *.parquet")
        return Format("parquet")
    return Format("jsonl" if base in JSONL_NAMES else "text", codec)


def formats_of(ext: str) -> dict[str, Format]:
    """The format of each extension of ``--ext`` (one, or several separated by commas); a UserError
    naming the first that no reader takes (``parquet.gz``)."""
    return {e: format_of(e) for e in ext.split(",")}


def read_key(fmt: Format, text_column: str, task_bytes: int) -> dict[str, Any] | None:
    """What reading adds to a piece's key; None for plain text (whose keys predate the formats).

    The same bytes read as another format, or another column, are other
    text. A compressed text stream is cut for giant lines inside the worker
    (ranges.cut_stream) where the scan cannot see: the task size counts.
    """
    if fmt == TEXT:
        return None
    key: dict[str, Any] = {"kind": fmt.kind, "codec": fmt.codec}
    if fmt.records:
        key["text_column"] = text_column
    if fmt.kind == "text":
        key["task_bytes"] = task_bytes
    return key


class Decompressed:
    """The decompressed bytes of a gzip or zstd file (members or frames one after another), read as
    a stream in bounded steps. A truncated or damaged file yields every byte decoded before the
    damage, then ends, with ``damage`` saying why (the caller counts it); ``garbage``: the damage
    was met before any byte decoded, and was not a truncation (not a compressed file at all)."""

    IN_BYTES = 64 << 10  # compressed bytes fed at a time: bounds each step's output for real text

    def __init__(self, raw: Any, codec: str):
        self.raw, self.codec = raw, codec
        self.pending = bytearray()
        self.out = 0  # decompressed bytes handed out
        self.damage: str | None = None
        self.garbage = False
        self.ended = False
        self.dec, self.fed = self._new(), False

    def _new(self) -> Any:
        if self.codec == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def _fill(self, n: int) -> None:
        while len(self.pending) < n and not self.ended:
            data = self.raw.read(self.IN_BYTES)
            if not data:
                self.ended = True
                if self.fed:  # a member or frame began and never ended
                    self._damaged("truncated: the file ends inside compressed data", garbage=False)
                return
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        import zstandard

        while data and not self.ended:
            try:
                self.pending += self.dec.decompress(data)
            except (zlib.error, zstandard.ZstdError) as e:
                self._damaged(f"damaged compressed data ({e})")
                return
            self.fed = True
            if not self.dec.eof:
                return
            data = self.dec.unused_data
            self.dec, self.fed = self._new(), False
            if data and not any(data.startswith(m) for m in CODEC_MAGIC[self.codec]):
                self._damaged(f"{len(data)}+ bytes after the last complete {self.codec} member that are not "
                              f"{self.codec} data")

    def _damaged(self, why: str, garbage: bool = True) -> None:
        self.damage, self.ended = why, True
        self.garbage = garbage and self.out + len(self.pending) == 0

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self.pending[:n])
        del self.pending[:n]
        self.out += len(out)
        return out

    def readinto(self, buf: bytearray) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class RecordError(ValueError):
    """A record that holds no usable text: counted, named in a warning, never a crash."""


def record_text(line: bytes | str, column: str) -> str:
    """The text of one JSON Lines record, or RecordError saying why there is none."""
    try:
        record = json.loads(line)
    except ValueError as e:  # JSONDecodeError, and UnicodeDecodeError on bytes
        raise RecordError(f"not valid JSON ({str(e).split(':')[0]})") from None
    except RecursionError:
        raise RecordError("not valid JSON (nested too deep)") from None
    if not isinstance(record, dict):
        raise RecordError(f"a JSON {type(record).__name__}, not an object")
    if column not in record:
        raise RecordError(f"no {column!r} field")
    text = record[column]
    if not isinstance(text, str):
        raise RecordError(f"{column!r} is {'null' if text is None else type(text).__name__}, not a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape ("\ud800"): not a character; replaced like invalid UTF-8
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def parquet_column(path: str | Path, column: str) -> tuple[Any, str | None]:
    """(the open ParquetFile, why ``column`` cannot be read as text or None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(str(path))
    schema = pf.schema_arrow
    if column not in schema.names:
        return pf, f"no column {column!r} (columns: {', '.join(schema.names[:8])})"
    t = schema.field(column).type
    if pa.types.is_dictionary(t):  # dictionary-encoded strings read as strings
        t = t.value_type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
        return pf, f"column {column!r} is {t}, not a string"
    return pf, None


def parquet_texts(pf: Any, column: str, row_groups: list[int], batch_rows: int = 1024) -> Iterator[list[str | None]]:
    """The ``column`` values of these row groups, in batches; no other column is read. Values that are
    not valid UTF-8 (Parquet does not check) are decoded with U+FFFD, as in a ``.txt`` file."""
    import pyarrow as pa

    for batch in pf.iter_batches(batch_size=batch_rows, row_groups=row_groups, columns=[column], use_threads=False):
        col = batch.column(0)
        try:
            yield col.to_pylist()
        except UnicodeDecodeError:
            raw = col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
            yield [None if b is None else b.decode("utf-8", "replace") for b in raw.cast(pa.binary()).to_pylist()]




# Reading a task's text into batches of cleaned lines (encode.py encodes each batch)

STREAM_READ = 1 << 20  # decompressed bytes a read


@dataclass
class Batch:
    """Cleaned lines of one chunk of a task, and what reading them found."""

    lines: list[str]
    starts_open: bool = False  # the first line closes one a previous chunk or task left open
    ends_open: bool = False  # the last line goes on in the next chunk or task
    invalid: int = 0  # invalid UTF-8 sequences replaced with U+FFFD
    text_bytes: int = 0  # UTF-8 bytes of the text the lines came from (the manifest's text_bytes)
    bad: int = 0  # records that held no usable text
    bad_examples: list[str] = field(default_factory=list)


class Docs:
    """Documents of one chunk of records: their cleaned lines (this side of a held-out split), and the
    records that held no text."""

    def __init__(self, task: Task, space: str | None):
        self.task, self.space = task, space
        self.lines: list[str] = []
        self.chars = self.invalid = self.bad = self.text_bytes = 0
        self.examples: list[str] = []

    def add(self, text: str) -> None:
        self.chars += len(text)
        lines = clean_lines(text, self.space)
        select = self.task.reading.select
        if select is not None:
            fraction, seed, side = select
            if held_out("\n".join(lines), fraction, seed) != side:
                return
        self.lines += lines
        self.text_bytes += len(text.encode("utf-8", errors="surrogatepass"))  # the document's text as read

    def reject(self, where: str, why: str, count: int = 1) -> None:
        select = self.task.reading.select
        if select is not None and select[2]:
            return  # counted once, by the training side
        self.bad += count
        if len(self.examples) < BAD_EXAMPLES:
            self.examples.append(f"{self.task.path}{where}: {why}")

    def batch(self) -> Batch:
        return Batch(self.lines, invalid=self.invalid, text_bytes=self.text_bytes, bad=self.bad,
                     bad_examples=self.examples)


def jsonl_docs(data: bytes, first_line: int, docs: Docs) -> int:
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
                docs.add(record_text(line, docs.task.reading.column))
            except RecordError as e:
                docs.reject(f" line {first_line + i + 1}", str(e))
    return len(lines) - 1 if text.endswith("\n") else len(lines)


@dataclass
class Read:
    """What reading a task's bytes came to: how many it read, and whether they differ from those planned
    (then none was handed on)."""

    nbytes: int
    changed: bool = False


Emit = Callable[[Batch], object]


def read_task(task: Task, space: str | None, emit: Emit) -> Read:
    """Read one task's text and hand it to ``emit`` in batches of cleaned lines, in order.

    A batch is handed on only if the bytes are those the run planned with
    (their digest; Parquet: the file's size and time stamp), so a file
    rewritten or truncated mid-run never ends up stored under the digest of
    other bytes. A compressed stream is checked once read to its end: its
    caller must drop what it was handed when ``changed``.
    """
    if task.fmt.kind == "parquet":
        return _read_parquet(task, space, emit)
    if task.fmt.codec:
        return _read_stream(task, space, emit)
    with open(task.path, "rb") as f:
        f.seek(task.start)
        raw = f.read(task.end - task.start)
    if len(raw) != task.end - task.start or xxhash.xxh3_128_hexdigest(raw) != task.digest:
        return Read(len(raw), changed=True)
    nbytes = len(raw)
    if task.fmt.kind == "jsonl":
        docs = Docs(task, space)
        jsonl_docs(raw, task.line_start, docs)
        emit(docs.batch())
        return Read(nbytes)
    text, invalid = decode_bytes(raw)
    del raw
    lines, starts_open, ends_open, n = text_lines(text, space, task.starts_open, task.ends_open,
                                                  task.reading.select, nbytes)
    del text
    emit(Batch(lines, starts_open, ends_open, invalid, n))
    return Read(nbytes)


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


def _read_stream(task: Task, space: str | None, emit: Emit) -> Read:
    """A compressed shard, decompressed as a stream and handed on chunk by chunk."""
    with open(task.path, "rb") as f:
        raw = _HashingReader(f)
        stream = Decompressed(raw, task.fmt.codec)
        (_stream_text if task.fmt.kind == "text" else _stream_jsonl)(task, space, stream, emit)
        damaged = stream.damage
        while raw.read(CHUNK_BYTES):  # past the last frame: hashed too, the digest is of the whole file
            pass
    if raw.n != task.end - task.start or raw.h.hexdigest() != task.digest:
        return Read(raw.n, changed=True)
    if damaged:
        extra = Docs(task, space)
        extra.reject("", f"{damaged}; what came before was kept")
        emit(extra.batch())
    return Read(raw.n)


def _stream_text(task: Task, space: str | None, stream: Decompressed, emit: Emit) -> None:
    """Cut the decompressed text as a ``.txt`` file of it is cut (ranges.cut_stream), and hand on
    each range: the same ranges give the same ids."""
    buf = bytearray()
    state = {"open": False}

    def on_part(b: bytearray, lo: int, hi: int) -> None:
        buf.extend(memoryview(b)[lo:hi])

    def on_cut(start: int, end: int, is_open: bool) -> None:
        text, invalid = decode_bytes(bytes(buf))
        lines, starts_open, ends_open, n = text_lines(text, space, state["open"], is_open, task.reading.select,
                                                      len(buf))
        buf.clear()
        emit(Batch(lines, starts_open, ends_open, invalid, n))
        state["open"] = is_open

    cut_stream(stream.readinto, task.reading.task_bytes, lambda v: None, on_part, on_cut, read_bytes=STREAM_READ)
    if buf or state["open"]:
        on_cut(0, 0, False)


def _stream_jsonl(task: Task, space: str | None, stream: Decompressed, emit: Emit) -> None:
    """Decompressed JSON Lines, handed on in chunks of whole records of about the task size."""
    buf, line = bytearray(), 0
    while True:
        data = stream.read(STREAM_READ)
        buf += data
        if len(buf) >= task.reading.task_bytes or not data:
            cut = len(buf) if not data else buf.rfind(b"\n") + 1
            if cut > 0:
                docs = Docs(task, space)
                line += jsonl_docs(bytes(buf[:cut]), line, docs)
                emit(docs.batch())
                del buf[:cut]
        if not data:
            return


def _read_parquet(task: Task, space: str | None, emit: Emit) -> Read:
    """Row groups ``[start, end)`` of a Parquet shard, handed on in chunks of about the task size; the
    bytes read are the compressed size of those row groups (for the progress bar)."""
    if _stamp(task.path) != task.stamp:
        return Read(0, changed=True)
    column = task.reading.column
    pf, why = parquet_column(task.path, column)
    meta = pf.metadata
    row = sum(meta.row_group(g).num_rows for g in range(task.start))
    docs = Docs(task, space)
    if why is not None:
        rows = sum(meta.row_group(g).num_rows for g in range(task.start, task.end))
        if rows:
            docs.reject(f" rows {row}-{row + rows - 1}", why, rows)
    else:
        for values in parquet_texts(pf, column, list(range(task.start, task.end))):
            for v in values:
                if isinstance(v, str):
                    docs.add(v)
                else:
                    docs.reject(f" row {row}", f"{column!r} is null")
                row += 1
            if docs.chars >= task.reading.task_bytes:
                emit(docs.batch())
                docs = Docs(task, space)
    emit(docs.batch())
    if _stamp(task.path) != task.stamp:
        return Read(0, changed=True)
    return Read(sum(meta.row_group(g).column(k).total_compressed_size
                    for g in range(task.start, task.end) for k in range(meta.num_columns)))


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


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
