"""Find the input shards, group small ones into pieces, and cut them into tasks for the worker pool.

A task is a byte range ``[start, end)`` of one shard whose ends sit just after
a ``\\n`` (or at the file's ends), found in binary mode: text-mode ``tell()``
is an opaque cookie, not a byte offset. Small shards are one task; big ones
are cut into ranges of about ``task_bytes`` so every core stays busy and a
worker's memory is bounded by the task, not the shard. A line so long that
no ``\\n`` comes within ``task_bytes`` of where a range should end is cut
after a CR (also a line end to the cleaning), else mid-line, just before a
run of spaces or tabs (where every tokenizer we know splits words anyway),
else at a character boundary: the range is *open* and the next continues
its last line (preprocess/encode.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from common.check import input_dirs, list_inputs, listed_ext
from common.errors import UserError
from common.hashing import CHUNK_BYTES, file_digest, map_files
from preprocess.formats import CODECS, SNIFF_BYTES, Format, not_text, shard_format, sniff


@dataclass(frozen=True)
class Task:
    shard: int  # index into the split's sorted shard list
    path: str
    start: int
    end: int
    last: bool  # the shard's final task: its arrays can be committed after it
    digest: str  # of bytes [start, end) when the run started: the worker tokenizes only these bytes
    fmt: Format  # how to read its shard (preprocess/formats.py: shard_format): a split may mix formats
    starts_open: bool = False  # the range starts in the middle of a line the previous range began
    ends_open: bool = False  # the range ends in the middle of a line the next range finishes
    column: str = "text"  # the text's field or column, for records
    line_start: int = 0  # JSON Lines: lines of the file before ``start``; Parquet: rows before row group ``start``
    stamp: tuple[int, int] | None = None  # Parquet: the (size, mtime_ns) the run planned with
    task_bytes: int = 4 << 20  # the chunk size of a task read as a stream (cut_stream)
    select: tuple[float, int, bool] | None = None  # a held-out split: (fraction, seed, this is the held-out side)
    spill_dir: str = ""  # where a task whose output comes in several chunks keeps them (its split's pieces dir)


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


def list_shards(input_dir: str, ext: str, flag: str = "--train_dir", recursive: bool = False,
                column: str = "text", *, has_recursive: bool) -> list[tuple[str, Path, Format]]:
    """(name, path, format) of every ``*.<ext>`` file directly in the dir or dirs of ``input_dir`` (or
    below them, ``recursive``), sorted by name (common/check.py: ``list_inputs``), each checked readable
    and of the format its extension names (formats.py: ``shard_format``; ``ext`` may list several).
    ``has_recursive``: the command has a ``--recursive`` flag, which the no-shard hint may suggest."""
    dirs = input_dirs(input_dir)
    for d in dirs:
        if not d.exists():
            raise UserError(f"{flag} {d}: no such directory")
        if not d.is_dir():
            raise UserError(f"{flag} {d}: not a directory")
    shards = list_inputs(dirs, ext, recursive)
    for d in dirs:
        if not any(p.is_relative_to(d) for _, p in shards):
            raise UserError(f"{flag} {d}: no {_pattern(ext)} files{_empty_hint(d, ext, recursive, has_recursive)}")
    fmts = [shard_format(p, ext) for _, p in shards]
    column_states = []
    for (_, p), fmt in zip(shards, fmts):
        base = next(d for d in dirs if p.is_relative_to(d))
        column_states.append(check_shard(p, str(base), base, fmt, column))
    if any(f.records for f in fmts) and "" not in column_states and any(column_states):
        k = next(i for i, why in enumerate(column_states) if why)
        records = ",".join(e for e in ext.split(",") if shard_format(f"x.{e}", e).records)
        raise UserError(f"{flag} {input_dir}: no {_pattern(records)} file has its text in {column!r} (e.g. "
                        f"{shards[k][1]}: {column_states[k]}); pass the field or column that holds the text with "
                        "--text_column")
    return [(name, p, fmt) for (name, p), fmt in zip(shards, fmts)]


def _pattern(ext: str) -> str:
    """``*.txt``, or ``*.{parquet,txt}`` for several extensions."""
    return f"*.{ext}" if "," not in ext else f"*.{{{ext}}}"


HINT_FILES = 10_000  # files the no-shard hint looks at: a --train_dir of / must not walk the whole disk


def _empty_hint(d: Path, ext: str, recursive: bool, has_recursive: bool) -> str:
    """Why ``d`` has no ``*.<ext>`` file, and what would read its files: ``--recursive`` only where
    such files are in its subdirectories (and the command has the flag), else the extensions its files
    have, with the ``--ext`` that reads them."""
    top: list[Path] = []
    below: list[Path] = []
    for root, _, files in os.walk(d):  # links to dirs are not entered, as in the listing
        (top if root == str(d) else below).extend(Path(root) / f for f in files)
        if len(top) + len(below) >= HINT_FILES:
            break
    nested = None if recursive else next((p for p in below if listed_ext(p.name, ext)), None)
    if nested is not None:
        sub = nested.relative_to(d).parts[0]
        fix = ("add --recursive to read them" if has_recursive
               else "this command reads only the files directly in the dir: pass that subdirectory")
        return f" (only in its subdirectories, e.g. {sub}/: {fix})"
    seen = top + below if recursive else top
    where = "it has"
    if not seen and below:  # files only in subdirectories, none of them *.<ext>
        seen, where = below, f"only its subdirectories have files, e.g. {below[0].relative_to(d).parts[0]}/,"
    if not seen:
        return " (it is empty)"
    counts = Counter(e for p in seen if (e := _extension(p))).most_common(5)
    if not counts:
        return f" ({where} files without an extension, e.g. {seen[0].name}: name the shards *.txt or the like)"
    named = [f"{n} *.{e}" for e, n in counts]
    found = f"{', '.join(named[:-1])} and {named[-1]}" if len(named) > 1 else named[0]
    one = len(seen) == 1
    flags = f"--ext {','.join(sorted(e for e, _ in counts))}"
    if seen is below:
        flags = f"--recursive {flags}" if has_recursive else f"a subdirectory as the dir, with {flags}"
    return (f" ({where} {found} file{'' if one else 's'}: to read {'it' if one else 'them'}, pass {flags}"
            f"{', leaving out any that are not shards' if len(counts) > 1 else ''})")


def _extension(p: Path) -> str:
    """``txt``, or ``jsonl.gz`` where the last suffix names a codec: what --ext would take; "" for a
    name without one (``README``, ``.DS_Store``)."""
    tail = p.suffixes[-2:] if len(p.suffixes) > 1 and p.suffix.lstrip(".").lower() in CODECS else p.suffixes[-1:]
    return "".join(tail).lstrip(".")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_shard(p: Path, input_dir: str, base: Path, fmt: Format, column: str = "text") -> str | None:
    """UserError unless ``p`` is a readable regular file with a UTF-8 name, of the format ``fmt``;
    for records, why its head holds no ``column`` text ("" if it does; None: no record to tell).

    A FIFO or a device would hang the run or feed it endless bytes; a name
    that is not UTF-8 cannot be written to the manifest (JSON is UTF-8).
    """
    name = str(p.relative_to(base))
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{input_dir}: the file name {os.fsencode(name)!r} is not valid UTF-8; rename it "
                        "(e.g. convmv -f latin1 -t utf8 --notest) or move it out of the dir") from None
    try:
        mode = p.stat().st_mode  # follows symlinks: a link to a regular file is a shard
        if not stat.S_ISREG(mode):
            raise UserError(f"{p}: {_kind(mode)}, not a regular file; move it out of {input_dir}")
        with open(p, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as e:
        raise UserError(f"{p}: not readable ({e.strerror}); fix it or move it out of {input_dir}") from None
    if fmt.ranges:
        what = not_text(head)
        if what:
            raise UserError(f"{p}: {what}, not text: it would be tokenized as garbage. "
                            f"{_reader_hint(p, what)}or move it out of {input_dir}")
    what, column_state = sniff(p, fmt, column)
    if what:
        raise UserError(f"{p}: {what}. {_reader_hint(p, what)}or move it out of {input_dir}")
    return column_state


def _reader_hint(p: Path, what: str) -> str:
    """Which ``--ext`` reads a file whose bytes say ``what`` it is, if one does."""
    parts = p.name.split(".")[1:] or ["txt"]
    last, base = parts[-1], (parts[-2] if len(parts) > 1 else "txt")
    for codec, suffix in (("gzip", "gz"), ("zstd", "zst")):
        if what.startswith(f"{codec}-compressed"):
            return f"If it is compressed text, name it *.{last}.{suffix} and read it with --ext {last}.{suffix}; "
    if what.startswith("a Parquet file"):
        return "Name it *.parquet and read it with --ext parquet; "
    if what.startswith("not gzip") or what.startswith("not zstd"):
        return f"If it is not compressed, name it *.{base} and read it with --ext {base}; "
    if what.startswith("not JSON Lines"):
        return "Convert it to JSON Lines, one object a line (e.g. jq -c '.[]' in.json > out.jsonl), "
    if what.startswith("cannot be"):
        return "Replace it with an intact copy "
    return "Convert it to UTF-8 text "


LINE_ENDS = (0x0A, 0x0D)  # \n, and \r, which the cleaning also reads as a line end (old Mac files)
SPACES = (0x20, 0x09)


_CUT = re.compile(rb"[\n\r]|(?<![ \t])[ \t]")


def _cut_point(buf: bytearray, lo: int, hi: int, prev: int) -> int:
    """The first byte in ``buf[lo:hi]`` that is a line end (cut after it) or a space or tab that follows
    a byte other than a space or tab (cut before it: the start of a run of spaces, so no piece ends in
    spaces and none starts inside a run); ``prev`` is the byte before ``buf[lo]`` (the previous read's
    last byte when ``lo`` is 0). -1 if none."""
    if lo >= hi:
        return -1
    if buf[lo] in LINE_ENDS or (buf[lo] in SPACES and prev not in SPACES):
        return lo
    m = _CUT.search(buf, lo + 1, hi)  # the lookbehind sees buf[lo]: search does not slice
    return m.start() if m else -1


def cut_stream(readinto: Callable[[bytearray], int], task_bytes: int, on_read: Callable[[memoryview], object],
               on_part: Callable[[bytearray, int, int], object], on_cut: Callable[[int, int, bool], object],
               lines_only: bool = False, read_bytes: int | None = None) -> int:
    """Read a byte stream to its end and cut it into task ranges; returns how many bytes it had.

    ``on_read(view)`` sees every read; ``on_part(buf, lo, hi)`` every byte of
    the current range, in order, as it is read; ``on_cut(start, end, open)``
    each range's end, after ``on_part`` saw its last byte (the last range
    is not reported: the caller closes it at the returned size).

    A range ends just after the first ``\n`` (or CR) at or past ``start + task_bytes - 1``
    (or at the end of the stream), so ranges hold whole lines and depend only
    on the bytes and ``task_bytes``, never on the number of workers or the
    read size. A line too long for that (no ``\n`` up to ``start + 2 x
    task_bytes``) is cut after the next CR (a line end too), else *open* just
    before the next run of spaces or tabs, or, if none comes by
    ``start + 3 x task_bytes``, at the next UTF-8
    character boundary. No range, and no worker's memory, then grows with a
    line's length; every search runs forward, so the reads' size cannot move a cut.
    ``lines_only`` (JSON Lines, whose records cannot be cut): only after a ``\n``, however far.
    ``read_bytes``: the size of each read, CHUNK_BYTES as it is when called (tests shrink it).
    """
    buf = bytearray(read_bytes or CHUNK_BYTES)
    view = memoryview(buf)
    start = offset = 0
    last_byte = 0x0A
    step = max(task_bytes, 1)
    while n := readinto(buf):
        on_read(view[:n])
        p = 0
        while (cut := start + step - 1 - offset) < n:
            w1, w2 = start + 2 * step - 1 - offset, start + 3 * step - 1 - offset  # relative to buf
            if lines_only:
                i = buf.find(b"\n", max(p, cut, 0), n)
                if i < 0:
                    break
                end, is_open = i + 1, False
            else:
                prev = buf[w1] if 0 <= w1 < n else last_byte  # the byte before the cut search starts
                lo, hi = max(p, cut, 0), max(0, min(n, w1 + 1))  # a negative end would count from the end
                i = min((k for k in (buf.find(b"\n", lo, hi), buf.find(b"\r", lo, hi)) if k >= 0), default=-1)
                if i >= 0:
                    end, is_open = i + 1, False
                elif w1 >= n:
                    break  # the window goes on in the next read
                elif (j := _cut_point(buf, max(p, w1 + 1), max(0, min(n, w2 + 1)), prev)) >= 0:
                    end, is_open = (j + 1, False) if buf[j] in LINE_ENDS else (j, True)
                elif w2 >= n:
                    break
                else:
                    j = max(p, w2)
                    while j < n and (buf[j] & 0xC0) == 0x80:  # inside a UTF-8 character
                        j += 1
                    if j == n:
                        break
                    end, is_open = j, True
            on_part(buf, p, end)
            on_cut(start, offset + end, is_open)
            start, p = offset + end, end
        on_part(buf, p, n)
        last_byte = buf[n - 1]
        offset += n
    return offset


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
        size = cut_stream(f.readinto, task_bytes, whole.update, on_part, on_cut, lines_only)
    start = ranges[-1][1] if ranges else 0
    if start < size or not ranges:
        ranges.append((start, size, part.hexdigest()))
        line_starts.append(newlines)
    return Scan(size, whole.hexdigest(), tuple(ranges), tuple(open_ends),
                tuple(line_starts[: len(ranges)]) if lines_only else ())


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
    from preprocess.formats import parquet_column

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
    mtime_ns = os.stat(path).st_mtime_ns
    if fmt.ranges:
        scan = scan_shard(path, task_bytes, lines_only=fmt.kind == "jsonl")
    elif fmt.kind == "parquet":
        scan = scan_whole(path, row_group_runs(path, column, task_bytes))
    else:
        scan = scan_whole(path)
    return dataclasses.replace(scan, mtime_ns=mtime_ns)


def scan_shards(paths: list[Path], fmts: list[Format], task_bytes: int, threads: int = 4,
                progress: Callable[[int], object] | None = None, column: str = "text") -> list[Scan]:
    """``scan_input`` of many files, each in its format (``fmts``, by path), read in parallel (reads
    and hashing release the GIL), in order."""
    fmt_of = dict(zip(paths, fmts, strict=True))

    def one(p: Path) -> Scan:
        scan = scan_input(p, fmt_of[p], task_bytes, column)
        if progress is not None:
            progress(scan.size)
        return scan

    return map_files(one, paths, threads)


def plan_tasks(shards: list[tuple[int, Path, Scan, Format]], **common: Any) -> list[Task]:
    """The tasks of each (index, path, scan, format) shard: its ranges, in order; ``common``: Task
    fields every task shares (column, spill dir)."""
    tasks = []
    for index, path, scan, fmt in shards:
        opened = set(scan.open_ends)
        for k, (start, end, digest) in enumerate(scan.ranges):
            tasks.append(Task(index, str(path), start, end, k == len(scan.ranges) - 1, digest, fmt,
                              starts_open=start in opened, ends_open=end in opened,
                              line_start=scan.line_starts[k] if scan.line_starts else 0, stamp=scan.stamp,
                              **common))
    return tasks


PIECE_CAP = 4  # a piece of small files closes at this many times --task_size_mb, hash or not


def group_shards(names: list[str], sizes: list[int], target: int) -> list[int]:
    """How many consecutive shards each piece holds (common/format.py), from names and sizes alone.

    A shard of at least ``target / 2`` bytes is a piece of its own. Small
    shards are grouped, and a group ends after a shard whose *name* hashes
    to 0 modulo ``m``, ``m`` the power of two nearest to how many typical
    (median) small shards make ``target``: boundaries depend on names, not
    on sizes, so editing one small file changes its own piece only, and
    adding or removing one changes the piece it joins or leaves. A group
    also ends at ``PIECE_CAP x target`` bytes, so a run of unlucky names
    cannot grow one piece without bound. Never on worker or node counts.
    """
    small = sorted(size for size in sizes if 2 * size < target)
    typical = max(1, small[len(small) // 2]) if small else target
    m = 1 << max(0, round(math.log2(max(1.0, target / typical))))
    counts: list[int] = []
    n = acc = 0
    for name, size in zip(names, sizes):
        big = 2 * size >= target
        if big and n:  # a big shard stands alone: close the group before it
            counts.append(n)
            n = acc = 0
        n, acc = n + 1, acc + size
        if big or xxhash.xxh64_intdigest(name.encode("utf-8")) % m == 0 or acc >= PIECE_CAP * target:
            counts.append(n)
            n = acc = 0
    if n:
        counts.append(n)
    return counts
