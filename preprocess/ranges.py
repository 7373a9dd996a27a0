"""Where a task's byte range ends: the one rule the scan (planning) and a compressed stream's reader share.

A task is a byte range ``[start, end)`` of one shard whose ends sit just after
a ``\\n`` (or at the file's ends), found in binary mode: text-mode ``tell()``
is an opaque cookie, not a byte offset. Small shards are one task; big ones
are cut into ranges of about ``task_bytes`` so every core stays busy and a
worker's memory is bounded by the task, not the shard. A line so long that
no ``\\n`` comes within ``task_bytes`` of where a range should end is cut
after a CR (also a line end to the cleaning), else mid-line, just before a
run of spaces or tabs (where every tokenizer we know splits words anyway),
else at a character boundary: the range is *open* and the next continues
its last line (cleaning.py: ``clean_segments``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from common.hashing import CHUNK_BYTES

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
