"""Task ranges: newline-aligned, covering the file once, independent of how the file is read."""

from __future__ import annotations

import random

import pytest
import xxhash

import preprocess.sharding as sharding
from common.hashing import file_digest


@pytest.mark.parametrize("task_bytes", [1, 5, 64, 1000])
def test_ranges_do_not_depend_on_the_read_buffer_and_hash_what_they_cover(tmp_path, monkeypatch, task_bytes):
    rng = random.Random(task_bytes)
    text = b"".join(b"x" * rng.choice([0, 1, 3, 40, 300]) + rng.choice([b"\n", b"\r\n", b"\r"]) for _ in range(300))
    path = tmp_path / "a.txt"
    path.write_bytes(text + b"no newline at the end")
    big = sharding.scan_shard(path, task_bytes)
    monkeypatch.setattr(sharding, "CHUNK_BYTES", 7)  # lines and boundaries now cross many reads
    small = sharding.scan_shard(path, task_bytes)
    assert small == big and big.digest == file_digest(path) and big.size == path.stat().st_size
    data = path.read_bytes()
    assert big.ranges[0][0] == 0 and big.ranges[-1][1] == len(data)
    for (s, e, digest), nxt in zip(big.ranges, [*big.ranges[1:], None]):
        assert xxhash.xxh3_128_hexdigest(data[s:e]) == digest
        if nxt is not None:
            assert nxt[0] == e and data[e - 1 : e] == b"\n" and e - s >= task_bytes


def test_an_empty_file_is_one_empty_task(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    scan = sharding.scan_shard(tmp_path / "e.txt", 10)
    assert scan.size == 0 and len(scan.ranges) == 1 and scan.ranges[0][:2] == (0, 0)
