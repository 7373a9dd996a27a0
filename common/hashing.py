"""Content digests: the only thing that decides whether cached work is fresh.

xxh3_128 because hashing must not be the slow part of a no-op rerun: measured
here at 27 GB/s on one core against 4.5 GB/s for blake3 (7.5 GB/s with its
threads), so a rerun is bound by reading the files, not by hashing them.
It is not cryptographic; it guards against staleness, not against attackers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import xxhash

CHUNK_BYTES = 1 << 20
SMALL_FILE = 64 << 10  # a file shorter than this is read whole
T = TypeVar("T")


def file_digest(path: str | Path) -> str:
    """Digest of a file's bytes, streamed through one reused 1 MiB buffer.

    ``f.read(n)`` allocates a new chunk each time and the allocator keeps the
    pages: hashing raised the parent's RSS with shard size (30 -> 78 MiB for
    4 -> 37 MB shards), and forked workers inherited it.
    """
    with open(path, "rb", buffering=0) as f:
        head = f.read(SMALL_FILE)  # most files of a corpus of many: one read, no 1 MiB buffer to zero
        if len(head) < SMALL_FILE:
            return xxhash.xxh3_128_hexdigest(head)
        h = xxhash.xxh3_128(head)
        buf = bytearray(CHUNK_BYTES)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def map_files(fn: Callable[[Path], T], paths: Iterable[Path], threads: int = 4,
              total_bytes: int | None = None) -> list[T]:
    """``fn`` of each file, read in parallel threads (reads and xxhash release the GIL), in input order.

    ``total_bytes``: what the files hold, if known. Files of under 64 KiB on average are read in this
    thread: the Python around each read then costs more than the read, and threads only contend
    for the GIL (36,000 files of 1.3 KB: 0.8 s in one thread, 1.9 s in four); bigger ones keep their
    threads, which hide a network file system's latency.
    """
    paths = list(paths)
    if len(paths) <= 1 or (total_bytes is not None and total_bytes < len(paths) * SMALL_FILE):
        return [fn(p) for p in paths]
    # In batches, not a future per file: for 36,000 small files the pool's locking cost more than the reads.
    size = max(1, -(-len(paths) // (threads * 16)))
    batches = [paths[i : i + size] for i in range(0, len(paths), size)]
    with ThreadPoolExecutor(max_workers=min(threads, len(batches))) as pool:
        return [r for batch in pool.map(lambda b: [fn(p) for p in b], batches) for r in batch]


def file_digests(paths: Iterable[Path], threads: int = 4, progress: Callable[[int], object] | None = None,
                 total_bytes: int | None = None) -> list[str]:
    """Digests of many files, in input order; ``progress`` is called with each file's size as it finishes;
    ``total_bytes`` as ``map_files`` takes it."""

    def one(p: Path) -> str:
        d = file_digest(p)
        if progress is not None:
            progress(os.path.getsize(p))
        return d

    return map_files(one, paths, threads, total_bytes)


def fingerprint(obj: object) -> str:
    """Stable digest of a JSON-able object: the same content gives the same key on any machine."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return xxhash.xxh3_128(text.encode("utf-8")).hexdigest()
