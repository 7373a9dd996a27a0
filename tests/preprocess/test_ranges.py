"""Task ranges: newline-aligned, covering the file once, independent of how the file is read."""

from __future__ import annotations

import random

import pytest
import xxhash

import preprocess.ranges as ranges
import preprocess.scan as scan_module
from common.hashing import file_digest


@pytest.mark.parametrize("task_bytes", [1, 5, 64, 1000])
def test_ranges_do_not_depend_on_the_read_buffer_and_hash_what_they_cover(tmp_path, monkeypatch, task_bytes):
    rng = random.Random(task_bytes)
    text = b"".join(b"x" * rng.choice([0, 1, 3, 40, 300]) + rng.choice([b"\n", b"\r\n", b"\r"]) for _ in range(300))
    path = tmp_path / "a.txt"
    path.write_bytes(text + b"no newline at the end")
    big = scan_module.scan_shard(path, task_bytes)
    monkeypatch.setattr(ranges, "CHUNK_BYTES", 7)  # lines and boundaries now cross many reads
    small = scan_module.scan_shard(path, task_bytes)
    assert small == big and big.digest == file_digest(path) and big.size == path.stat().st_size
    data = path.read_bytes()
    assert big.ranges[0][0] == 0 and big.ranges[-1][1] == len(data)
    for (s, e, digest), nxt in zip(big.ranges, [*big.ranges[1:], None]):
        assert xxhash.xxh3_128_hexdigest(data[s:e]) == digest
        if nxt is not None:
            assert nxt[0] == e and e - s >= task_bytes
            if e in big.open_ends:  # no line end in the window: cut before a run of spaces, else past it
                assert (data[e : e + 1] in (b" ", b"\t") and data[e - 1 : e] not in (b" ", b"\t")
                        or e - s >= 3 * task_bytes - 1)
                assert not {b"\n"[0], b"\r"[0]} & set(data[s + task_bytes - 1 : e]) and e - s >= 2 * task_bytes
            else:  # after a line end: \n, or \r (old Mac files)
                assert data[e - 1 : e] in (b"\n", b"\r") and e - s <= 3 * task_bytes


def test_an_empty_file_is_one_empty_task(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    scan = scan_module.scan_shard(tmp_path / "e.txt", 10)
    assert scan.size == 0 and len(scan.ranges) == 1 and scan.ranges[0][:2] == (0, 0)


def test_a_giant_line_is_cut_open_where_a_space_is_whatever_the_read_size(tmp_path, monkeypatch):
    words = b" ".join(b"w%d" % (i % 97) for i in range(20000))  # one line of ~90 KB, no newline
    path = tmp_path / "giant.txt"
    path.write_bytes(words + b"\nshort\n")
    big = scan_module.scan_shard(path, 4096)
    monkeypatch.setattr(ranges, "CHUNK_BYTES", 1000)
    assert scan_module.scan_shard(path, 4096) == big
    assert len(big.open_ends) > 8 and big.ranges[-1][0] > len(words)  # the line in open ranges, "short" after
    for s, e, _ in big.ranges:
        if e in big.open_ends:
            assert 2 * 4096 <= e - s <= 3 * 4096 and words[e : e + 1] == b" "
    thai = ("ภาษาไทย" * 3000).encode()  # no space at all: cut at character boundaries
    path.write_bytes(thai)
    scan = scan_module.scan_shard(path, 1000)
    assert len(scan.open_ends) > 5
    for e in scan.open_ends:
        thai[:e].decode("utf-8")  # whole characters on each side
