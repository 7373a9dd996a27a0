"""A task's text, read in its format and handed on in batches of cleaned lines (encode.py encodes each).

Uncompressed text and JSON Lines: the task's byte range, checked against its
digest before anything is handed on. Compressed: the whole file as a stream,
decompressed and hashed in the same read, cut as a ``.txt`` file of it would
be (ranges.py), so the same text gives the same ids. Parquet: runs of row
groups, checked by the file's size and time stamp before and after.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from common.hashing import CHUNK_BYTES
from preprocess.cleaning import clean_lines, decode_bytes, held_out, text_lines
from preprocess.formats import (
    BAD_EXAMPLES,
    Decompressed,
    Format,
    RecordError,
    parquet_column,
    parquet_texts,
    record_text,
)
from preprocess.ranges import cut_stream
from preprocess.tasks import Task

STREAM_READ = 1 << 20  # decompressed bytes a read
Keep = Callable[[int], bool]  # whether to read the record on a stream line (its number, from 0)


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
    # With ``keep`` (read_task): the number of the stream line, the JSON Lines record, each line came from
    records: list[int] | None = None


class Docs:
    """Documents of one chunk of records: their cleaned lines (this side of a held-out split), and the
    records that held no text."""

    def __init__(self, task: Task, space: str | None, keep: Keep | None = None):
        self.task, self.space, self.keep = task, space, keep
        self.lines: list[str] = []
        self.records: list[int] | None = None if keep is None else []
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
                     bad_examples=self.examples, records=self.records)


def jsonl_docs(data: bytes, first_line: int, docs: Docs) -> int:
    """Add the records of whole JSON Lines ``data`` (line ``first_line + 1`` first) to ``docs``;
    returns how many lines it held."""
    text, invalid = decode_bytes(data)
    docs.invalid += invalid
    if first_line == 0:
        text = text.removeprefix("\ufeff")  # a byte-order mark before the first record is not JSON
    lines = text.split("\n")
    keep, records = docs.keep, docs.records
    for i, line in enumerate(lines):
        if keep is not None and not keep(first_line + i):
            continue  # not parsed: the sample's key of a record is its line number
        if line.strip():
            before = len(docs.lines)
            try:
                docs.add(record_text(line, docs.task.reading.column))
            except RecordError as e:
                docs.reject(f" line {first_line + i + 1}", str(e))
            if records is not None:
                records += [first_line + i] * (len(docs.lines) - before)
    return len(lines) - 1 if text.endswith("\n") else len(lines)


@dataclass
class Read:
    """What reading a task's bytes came to: how many it read, and whether they differ from those planned
    (then none was handed on)."""

    nbytes: int
    changed: bool = False


Emit = Callable[[Batch], object]


def read_task(task: Task, space: str | None, emit: Emit, keep: Keep | None = None) -> Read:
    """Read one task's text and hand it to ``emit`` in batches of cleaned lines, in order.

    ``keep`` (a compressed JSON Lines stream, for the tokenizer's sample): only the records on the stream
    lines it keeps are parsed and handed on, each line with its record's number (``Batch.records``);
    the rest are decompressed and hashed, never parsed. Other tasks ignore it.

    A batch is handed on only if the bytes are those the run planned with
    (their digest; Parquet: the file's size and time stamp), so a file
    rewritten or truncated mid-run never ends up stored under the digest of
    other bytes. A compressed stream is checked once read to its end: its
    caller must drop what it was handed when ``changed``.
    """
    if task.fmt.kind == "parquet":
        return _read_parquet(task, space, emit)
    if task.fmt.codec:
        return _read_stream(task, space, emit, keep)
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


def _read_stream(task: Task, space: str | None, emit: Emit, keep: Keep | None) -> Read:
    """A compressed shard, decompressed as a stream and handed on chunk by chunk."""
    with open(task.path, "rb") as f:
        raw = _HashingReader(f)
        stream = Decompressed(raw, task.fmt.codec)
        if task.fmt.kind == "text":
            _stream_text(task, space, stream, emit)
        else:
            _stream_jsonl(task, space, stream, emit, keep)
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


def _stream_jsonl(task: Task, space: str | None, stream: Decompressed, emit: Emit, keep: Keep | None) -> None:
    """Decompressed JSON Lines, handed on in chunks of whole records of about the task size."""
    buf, line = bytearray(), 0
    while True:
        data = stream.read(STREAM_READ)
        buf += data
        if len(buf) >= task.reading.task_bytes or not data:
            cut = len(buf) if not data else buf.rfind(b"\n") + 1
            if cut > 0:
                docs = Docs(task, space, keep)
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
