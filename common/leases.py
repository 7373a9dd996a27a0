"""Readers hold leases: a training job names, in the cache, the files it reads; preprocess keeps them.

A preprocess rerun deletes the pieces its new manifest no longer names. A
training job that started on the old manifest still reads them: its
DataLoader workers map the files again every epoch. So each training process
writes ``<cache>/readers/<host>.<pid>.json`` (the array files of each split
it uses) before it trains, touches it every REFRESH_S while it runs and
removes it when it ends. Preprocess keeps every file a live lease names and
says so; a lease is live while its process runs (this host) or while it was
touched within an hour (another host: the same rule as a temp file's writer,
common/format.py), so a later run deletes the pieces once the job is gone.
No ``flock`` across machines is relied on. The one window left: a job that
writes its lease in the milliseconds between a rerun's last look at the
leases and its deletions; the job then checks its files and stops with an
error before training rather than failing later.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
from common.format import FormatError, temp_is_stale, writer_id, writer_words
from common.json_files import read_json, write_json_atomic
from common.manifest import Manifest

READERS_DIR = "readers"
REFRESH_S = 60.0


@dataclass(frozen=True)
class Lease:
    path: Path
    writer: str  # <host>.<pid>
    files: dict[str, list[str]]  # split -> array files, relative to the split dir
    started: str

    @property
    def who(self) -> str:
        return writer_words(self.writer)


def _files(manifest: Manifest) -> list[str]:
    return [f.path for p in manifest.pieces for f in p.arrays()]


def read_leases(cache_dir: Path, remove_dead: bool = False) -> list[Lease]:
    """The live leases of ``cache_dir``; with ``remove_dead``, the files of dead ones are deleted."""
    d = Path(cache_dir) / READERS_DIR
    if not d.is_dir() or d.is_symlink():
        return []
    out, now = [], time.time()
    for path in sorted(d.glob("*.json")):
        writer = path.name[: -len(".json")]
        if temp_is_stale(path, writer, now):
            if remove_dead:
                path.unlink(missing_ok=True)
            continue
        try:
            d_ = read_json(path)
            files = {str(k): [str(f) for f in v] for k, v in d_["files"].items()}
            out.append(Lease(path, writer, files, str(d_.get("started", "?"))))
        except (FormatError, KeyError, TypeError, AttributeError):
            continue  # being written, or not ours: its writer will rewrite it
    return out


def leased(cache_dir: Path, split: str) -> tuple[set[str], list[str]]:
    """(files of ``split`` that live leases name, who holds them); dead leases are removed on the way."""
    files, holders = set(), []
    for lease in read_leases(cache_dir, remove_dead=True):
        if lease.files.get(split):
            files |= set(lease.files[split])
            holders.append(lease.who)
    return files, holders


@contextmanager
def hold(cache_dir: Path, manifests: dict[str, Manifest]) -> Iterator[bool]:
    """Hold a lease on the files of ``manifests`` (split -> manifest) while the body runs; yields False
    (after a note) when the cache cannot be written, so no lease protects this job."""
    d = Path(cache_dir) / READERS_DIR
    path = d / f"{writer_id()}.json"
    try:
        d.mkdir(exist_ok=True)
        write_json_atomic(path, {"host": socket.gethostname(), "pid": os.getpid(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "files": {split: _files(m) for split, m in manifests.items()}})
    except OSError as e:
        print(f"note: {cache_dir} cannot be written ({e.strerror}), so this job holds no lease on the pieces it "
              "reads: a preprocess run on this cache meanwhile could delete them", file=sys.stderr)
        yield False
        return
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(REFRESH_S):
            try:
                os.utime(path)
            except OSError:
                pass  # gone or unwritable for now: the next touch may work

    thread = threading.Thread(target=refresh, name="cache-lease", daemon=True)
    thread.start()
    try:
        _check_present(cache_dir, manifests)
        yield True
    finally:
        stop.set()
        path.unlink(missing_ok=True)


def _check_present(cache_dir: Path, manifests: dict[str, Manifest]) -> None:
    """UserError if a file the lease names is already gone: a rerun deleted it before the lease was seen."""
    for split, m in manifests.items():
        for f in _files(m):
            if not (Path(cache_dir) / split / f).is_file():
                raise UserError(f"{Path(cache_dir) / split / f} is gone: the cache was rebuilt while this job "
                                "started; rerun the job (it will train on the new cache)")
