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

import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import xxhash

from common.check import list_text_files
from common.errors import UserError
from common.hashing import CHUNK_BYTES, map_files


@dataclass(frozen=True)
class Task:
    shard: int  # index into the split's sorted shard list
    path: str
    start: int
    end: int
    last: bool  # the shard's final task: its arrays can be committed after it
    digest: str  # of bytes [start, end) when the run started: the worker tokenizes only these bytes
    starts_open: bool = False  # the range starts in the middle of a line the previous range began
    ends_open: bool = False  # the range ends in the middle of a line the next range finishes


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


def list_shards(input_dir: str, ext: str, flag: str = "--train_dir", recursive: bool = False) -> list[Path]:
    """Every ``*.<ext>`` file directly in ``input_dir`` (or below it, ``recursive``), sorted by its path
    under the dir, each checked readable and text."""
    d = Path(input_dir)
    if not d.exists():
        raise UserError(f"{flag} {input_dir}: no such directory")
    if not d.is_dir():
        raise UserError(f"{flag} {input_dir}: not a directory")
    shards = list_text_files(d, ext, recursive)
    if not shards:
        others = sorted({p.suffix for p in d.iterdir() if p.is_file()})
        subdirs = [p.name for p in d.iterdir() if p.is_dir()]
        if others:
            hint = f" (it has {', '.join(others)} files: pass the shards' extension with --ext)"
        elif subdirs:
            hint = f" (only subdirectories, e.g. {subdirs[0]}/: add --recursive to read them)"
        else:
            hint = " (it is empty)"
        raise UserError(f"{flag} {input_dir}: no *.{ext} files{hint}")
    for p in shards:
        check_shard(p, input_dir, d)
    return shards


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_shard(p: Path, input_dir: str, base: Path) -> None:
    """UserError unless ``p`` is a readable regular file with a UTF-8 name.

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
    what = not_text(head)
    if what:
        raise UserError(f"{p}: {what}, not text: it would be tokenized as garbage. Convert it to UTF-8 text "
                        f"or move it out of {input_dir}")


SNIFF_BYTES = 4096
MAGIC = ((b"\x1f\x8b", "gzip-compressed"), (b"\x28\xb5\x2f\xfd", "zstd-compressed"), (b"PAR1", "a Parquet file"),
         (b"BZh", "bzip2-compressed"), (b"\xfd7zXZ\x00", "xz-compressed"), (b"PK\x03\x04", "a zip archive"),
         (b"\xff\xfe", "UTF-16 text"), (b"\xfe\xff", "UTF-16 text"))


def not_text(head: bytes) -> str | None:
    """What the first bytes of a file say it is, if not text. Text that decodes as UTF-8 (a character
    cut by the sniff's end aside) and has no NUL is text, whatever it starts with ("BZh...", "PAR1 ...");
    otherwise a magic number names the format, and NUL bytes (text has none) mark binary. Invalid
    UTF-8 in what is otherwise text is left to the run (replaced and counted)."""
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return None
        except UnicodeDecodeError as e:
            if e.start >= len(head) - 3:  # a character cut by the end of the sniff
                return None
    for magic, what in MAGIC:
        if head.startswith(magic):
            return what
    if head.count(0) > len(head) // 100:
        return "binary data (NUL bytes)"
    return None


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


def scan_shard(path: Path, task_bytes: int) -> Scan:
    """Hash a shard and cut it into tasks in one pass over its bytes.

    A range ends just after the first ``\\n`` (or CR) at or past ``start + task_bytes - 1``
    (or at the end of the file), so ranges hold whole lines and depend only
    on the bytes and ``task_bytes``, never on the number of workers or the
    read size. A line too long for that (no ``\\n`` up to ``start + 2 x
    task_bytes``) is cut after the next CR (a line end too), else *open* just
    before the next run of spaces or tabs, or, if none comes by
    ``start + 3 x task_bytes``, at the next UTF-8
    character boundary. No range, and no worker's memory, then grows with a
    line's length; every search runs forward, so the reads' size cannot move a cut.
    """
    whole, part = xxhash.xxh3_128(), xxhash.xxh3_128()
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    ranges: list[tuple[int, int, str]] = []
    open_ends: list[int] = []
    start = offset = 0
    last_byte = 0x0A
    step = max(task_bytes, 1)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            whole.update(view[:n])
            p = 0
            while (cut := start + step - 1 - offset) < n:
                w1, w2 = start + 2 * step - 1 - offset, start + 3 * step - 1 - offset  # relative to buf
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
                part.update(view[p:end])
                ranges.append((start, offset + end, part.hexdigest()))
                if is_open:
                    open_ends.append(offset + end)
                part.reset()
                start, p = offset + end, end
            part.update(view[p:n])
            last_byte = buf[n - 1]
            offset += n
    if start < offset or not ranges:
        ranges.append((start, offset, part.hexdigest()))
    return Scan(offset, whole.hexdigest(), tuple(ranges), tuple(open_ends))


def scan_shards(paths: list[Path], task_bytes: int, threads: int = 4,
                progress: Callable[[int], object] | None = None) -> list[Scan]:
    """``scan_shard`` of many files, read in parallel (reads and hashing release the GIL), in order."""

    def one(p: Path) -> Scan:
        scan = scan_shard(p, task_bytes)
        if progress is not None:
            progress(scan.size)
        return scan

    return map_files(one, paths, threads)


def plan_tasks(shards: list[tuple[int, Path, Scan]]) -> list[Task]:
    """The tasks of each (index, path, scan) shard: its ranges, in order."""
    tasks = []
    for index, path, scan in shards:
        opened = set(scan.open_ends)
        for k, (start, end, digest) in enumerate(scan.ranges):
            tasks.append(Task(index, str(path), start, end, k == len(scan.ranges) - 1, digest,
                              starts_open=start in opened, ends_open=end in opened))
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
