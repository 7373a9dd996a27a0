"""One read of each shard before any work: its digest (the cache key) and its tasks' ranges, each hashed.

Text and uncompressed JSON Lines are cut by the rule of ranges.py as they
are hashed; a compressed file is one task over its whole bytes; a Parquet
file's tasks are runs of row groups, read from its footer. The scan of all
the text is what a no-op rerun costs, so it runs on several threads (reads
and hashing release the GIL).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import xxhash

from common.hashing import file_digest, map_files
from preprocess import ranges as ranges_module
from preprocess.formats import Format, parquet_column
from preprocess.ranges import cut_stream


@dataclass(frozen=True)
class Scan:
    """One read of a shard: its digest and its task ranges, each with the digest of its bytes.

    Both come from the same bytes, so a worker whose range still hashes to
    the range's digest is tokenizing exactly the bytes the shard's digest
    (its cache key) stands for, even if the file changed in between.
    """

    size: int  # bytes hashed
    digest: str  # xxh3_128 of the whole file: equals common.hashing.file_digest
    ranges: tuple[tuple[int, int, str], ...]  # (start, end, digest of those bytes), in order
    open_ends: tuple[int, ...] = ()  # the ends of ranges cut mid-line (a giant line), in order
    line_starts: tuple[int, ...] = ()  # JSON Lines: lines before each range, to name a bad record's line
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) of a shard read whole by its tasks, not by ranges
    mtime_ns: int | None = None  # st_mtime_ns before the read: the train stage's stat check (common/check.py)


def scan_shard(path: Path, task_bytes: int, lines_only: bool = False) -> Scan:
    """Hash a shard and cut it into tasks (``cut_stream``) in one pass over its bytes; with
    ``lines_only`` (JSON Lines) also count the lines before each range, to name a bad record's line."""
    whole, part = xxhash.xxh3_128(), xxhash.xxh3_128()
    ranges: list[tuple[int, int, str]] = []
    open_ends: list[int] = []
    line_starts = [0]
    newlines = 0

    def on_part(buf: bytearray, lo: int, hi: int) -> None:
        nonlocal newlines
        part.update(memoryview(buf)[lo:hi])
        if lines_only:
            newlines += buf.count(b"\n", lo, hi)

    def on_cut(start: int, end: int, is_open: bool) -> None:
        ranges.append((start, end, part.hexdigest()))
        line_starts.append(newlines)
        if is_open:
            open_ends.append(end)
        part.reset()

    with open(path, "rb", buffering=0) as f:
        # a buffer no bigger than the file: 36,000 small files must not zero 1 MiB each
        read_bytes = max(1, min(ranges_module.CHUNK_BYTES, os.fstat(f.fileno()).st_size + 1))
        size = cut_stream(f.readinto, task_bytes, whole.update, on_part, on_cut, lines_only, read_bytes)
    start = ranges[-1][1] if ranges else 0
    if start < size or not ranges:
        ranges.append((start, size, part.hexdigest()))
        line_starts.append(newlines)
    return Scan(size, whole.hexdigest(), tuple(ranges), tuple(open_ends),
                tuple(line_starts[: len(ranges)]) if lines_only else ())


SMALL_SCAN = 1 << 20  # a file shorter than this and than a task is hashed in one read


def _small(path: Path, task_bytes: int, lines_only: bool, mtime_ns: int) -> Scan | None:
    """``scan_shard`` of a file shorter than ``task_bytes`` (one range, no cut to look for: a range ends
    at or after ``start + task_bytes - 1``), in one read; None for a longer one. Most files of a corpus
    of many small files: 36,000 of them hash in a fraction of the time."""
    with open(path, "rb") as f:
        data = f.read(min(task_bytes, SMALL_SCAN))
    if len(data) >= task_bytes or len(data) == SMALL_SCAN:  # longer than it was, or than a task: cut it
        return None
    digest = xxhash.xxh3_128_hexdigest(data)
    return Scan(len(data), digest, ((0, len(data), digest),), (), (0,) if lines_only else (), mtime_ns=mtime_ns)


def scan_whole(path: Path, units: tuple[tuple[int, int], ...] = ()) -> Scan:
    """Hash a shard that is not cut into byte ranges: a compressed file is one task over its whole
    bytes; a Parquet file's tasks are runs of row groups ``units`` (start, end), checked by the stamp."""
    st = os.stat(path)  # before the read: a write during it leaves a stamp the tasks will not find
    digest = file_digest(path)
    ranges = tuple((a, b, digest) for a, b in units) or ((0, st.st_size, digest),)
    return Scan(st.st_size, digest, ranges, stamp=(st.st_size, st.st_mtime_ns))


def row_group_runs(path: Path, column: str, task_bytes: int) -> tuple[tuple[int, int], ...]:
    """Consecutive row groups of a Parquet file, as (first, end) runs of about ``task_bytes`` of the
    text column (uncompressed), from the footer alone. A file without the column is one run: its
    rows are all bad records, counted by one task."""
    pf, why = parquet_column(path, column)
    meta = pf.metadata
    if why is not None or meta.num_row_groups == 0:
        return ((0, meta.num_row_groups),)
    leaves = [meta.schema.column(i).path for i in range(meta.num_columns)]
    k = leaves.index(column) if column in leaves else -1
    runs, first, acc = [], 0, 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        acc += rg.column(k).total_uncompressed_size if k >= 0 else rg.total_byte_size
        if acc >= task_bytes:
            runs.append((first, g + 1))
            first, acc = g + 1, 0
    if first < meta.num_row_groups:
        runs.append((first, meta.num_row_groups))
    return tuple(runs)


def scan_input(path: Path, fmt: Format, task_bytes: int, column: str) -> Scan:
    """The scan of one shard in its format: byte ranges, one whole compressed file, or row-group runs;
    with the file's mtime as it was before the read (a write during it leaves another, so a check by
    stat never vouches for bytes other than those hashed)."""
    st = os.stat(path)
    mtime_ns = st.st_mtime_ns
    if fmt.ranges:
        small = _small(path, task_bytes, fmt.kind == "jsonl", mtime_ns) if st.st_size < SMALL_SCAN else None
        if small is not None:
            return small
        scan = scan_shard(path, task_bytes, fmt.kind == "jsonl")
    elif fmt.kind == "parquet":
        scan = scan_whole(path, row_group_runs(path, column, task_bytes))
    else:
        scan = scan_whole(path)
    return dataclasses.replace(scan, mtime_ns=mtime_ns)


def scan_shards(paths: list[Path], fmts: list[Format], task_bytes: int, column: str, threads: int = 4,
                progress: Callable[[int], object] | None = None, total_bytes: int | None = None) -> list[Scan]:
    """``scan_input`` of many files, each in its format (``fmts``, by path), read in parallel (reads
    and hashing release the GIL), in order."""
    fmt_of = dict(zip(paths, fmts, strict=True))

    def one(p: Path) -> Scan:
        scan = scan_input(p, fmt_of[p], task_bytes, column)
        if progress is not None:
            progress(scan.size)
        return scan

    return map_files(one, paths, threads, total_bytes)
