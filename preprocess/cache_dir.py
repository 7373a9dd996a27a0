"""What this tool owns in a cache dir, and how it keeps it: the lock, slice markers, cleanup.

* One committing writer per cache dir: an flock()ed file, released by the
  kernel even on SIGKILL. A plain run (which commits manifests and deletes
  what they no longer name) holds it exclusively; slices of one sliced build
  (``--slice``) hold it shared, so they run together but never beside a
  commit, and a commit never deletes what a running slice is writing.
* A slice leaves a marker (``<split>/slices/<K>-of-<N>.json``, written last:
  present means it finished) saying what it built; the commit reads them.
* Cleanup deletes only files with this tool's own names, only in a split's
  own dirs, never through a symlink; a temp file only once its writer is gone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.check import input_dirs
from common.errors import UserError
from common.format import (
    BLOCKS_DIR,
    LEGACY_DIRS,
    LOCK_NAME,
    MANIFEST_NAME,
    PIECES_DIR,
    TMP_MARK,
    FormatError,
    blocks_record_name,
    piece_record_name,
    temp_is_stale,
    writer_id,
    writer_words,
)
from common.json_files import read_json, write_json_atomic
from common.manifest import Manifest
from preprocess.spill import SPILL_PREFIX

MARKERS_DIR = "slices"


def check_layout(cache: Path, inputs: list[tuple[str, str]]) -> None:
    """Refuse text and cache that overlap, and links inside the cache's own dirs.

    The cache deletes the pieces it no longer needs; text inside it (or a
    cache inside the text) is one mistyped flag away from deleting a corpus.
    """
    c = cache.resolve()
    for flag, d in [(flag, str(x)) for flag, value in inputs for x in input_dirs(value)]:
        t = Path(d).resolve()
        if t == c or c in t.parents:
            raise UserError(f"{flag} {d} is inside --datasets_cache_dir {cache}, whose files this tool manages; "
                            "keep the text outside the cache dir")
        if t in c.parents:
            raise UserError(f"--datasets_cache_dir {cache} is inside {flag} {d}; put the cache outside the text dir")
    for split in ("train", "validation"):
        for p in (cache / split, cache / split / PIECES_DIR, cache / split / BLOCKS_DIR):
            if p.is_symlink():
                raise UserError(f"{p} is a symlink; the cache writes and deletes only in its own dirs: "
                                f"remove the link (rm {p}) and rerun")


_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


@contextmanager
def cache_lock(cache_dir: Path, shared: bool = False) -> Iterator[bool]:
    """Hold the cache's lock (``shared``: as one of several slices), or fail at once saying who holds it.

    Yields True, or False when the cache dir exists but cannot be written
    (a read-only mount, no permission): a fresh cache is then still usable,
    and the caller must not write.
    """
    path = cache_dir / LOCK_NAME
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # never write through a link
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path} is a symlink; the lock file is the cache's own: remove the link "
                            f"(rm {path}) and rerun") from None
        if e.errno in _READ_ONLY and cache_dir.is_dir():
            yield False
            return
        raise UserError(f"--datasets_cache_dir {cache_dir}: cannot be used as a cache dir ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(_held_message(cache_dir, fd, shared)) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{writer_id()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    """``pid N on HOST``, from the ``<host>.<pid>`` the exclusive holder wrote."""
    return writer_words(os.pread(fd, 256, 0).decode(errors="replace"))


def _held_message(cache_dir: Path, fd: int, shared: bool) -> str:
    """Who holds the lock we could not take: a committing run (exclusive, it wrote its host.pid) or
    slices (shared: then a shared lock would be granted)."""
    if shared:
        holder = _holder(fd)
        return (f"{cache_dir} is being committed by a plain preprocess run ({holder}); slices cannot run beside "
                "it: wait for it to finish")
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return (f"{cache_dir} is being written by slices of a sliced build (--slice); wait for every slice to "
                "finish, then rerun this to commit")
    except BlockingIOError:
        holder = _holder(fd)
        return (f"{cache_dir} is being written by another preprocess run ({holder}); wait for it to finish, or "
                "use another --datasets_cache_dir")


def marker_path(split_dir: Path, k: int, n: int) -> Path:
    return split_dir / MARKERS_DIR / f"{k}-of-{n}.json"


def write_marker(split_dir: Path, k: int, n: int, keys: list[str], tokenizer: dict[str, Any]) -> None:
    """Say that slice ``k`` of ``n`` built these pieces (written last: present means it finished)."""
    path = marker_path(split_dir, k, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"slice": k, "num_slices": n, "pieces": keys, "tokenizer": tokenizer})


def read_markers(split_dir: Path) -> list[dict[str, Any]]:
    """The markers of finished slices (unreadable ones skipped: a marker only informs)."""
    out = []
    d = split_dir / MARKERS_DIR
    if d.is_dir() and not d.is_symlink():
        for p in sorted(d.glob("*-of-*.json")):
            try:
                m = read_json(p)
            except FormatError:
                continue
            if isinstance(m, dict) and isinstance(m.get("num_slices"), int) and isinstance(m.get("pieces"), list):
                out.append(m)
    return out


def clear_markers(split_dir: Path) -> None:
    """Remove the markers once a commit wrote the manifest: the next plain run is an ordinary rerun."""
    d = split_dir / MARKERS_DIR
    if d.is_dir() and not d.is_symlink():
        for p in d.iterdir():
            if p.is_file() and not p.is_symlink() and p.name.endswith(".json"):
                p.unlink(missing_ok=True)
        try:
            d.rmdir()
        except OSError:  # something else is in it: leave it
            pass


# The names this tool writes in a split dir (common/format.py), with the temp
# names of writer.py and write_json_atomic and the chunk files of spill.py:
# the only files cleanup may delete.
_KEY = r"[0-9a-f]{32}"
_WRITER = r"(?P<writer>[A-Za-z0-9_-]+\.\d+)"  # <host>.<pid>: common.format.writer_id
_TEMP = rf"{re.escape(TMP_MARK)}(?:{_WRITER}\.[0-9a-f]+|(?P<pid>\d+))"  # (<pid> alone: written by version 0.1)
_NAMES = {
    PIECES_DIR: rf"\.?{_KEY}\.(tokens\.npy|lines\.npy|json)",
    **{d: rf"\.?{_KEY}\.(tokens\.npy|lines\.npy|json)" for d in LEGACY_DIRS},  # format 1's, replaced by pieces
    BLOCKS_DIR: rf"\.?{_KEY}\.(blocks\.npy|json)",
    ".": rf"\.{re.escape(MANIFEST_NAME)}",
}
_FINAL = {sub: re.compile(name) for sub, name in _NAMES.items() if sub != "."}
_TEMPS = {sub: re.compile(name + _TEMP) for sub, name in _NAMES.items()}
_SPILL = re.compile(rf"{re.escape(SPILL_PREFIX)}{_WRITER}-\d+\.(tokens|lengths)")


def _writer(m: re.Match) -> str:
    return m.group("writer") or f"{writer_id().rpartition('.')[0]}.{m.group('pid')}"


def safe_names(d: Path) -> list[str]:
    """The names of the regular files of ``d``, never through a symlink: whatever a link points at is
    not ours. Names, not Paths: a big split's dirs hold 142,000 files."""
    if d.is_symlink() or not d.is_dir():
        return []
    with os.scandir(d) as entries:  # the type from the listing itself: no stat per file
        return [e.name for e in entries if e.is_file(follow_symlinks=False)]


def remove_spills(out_dir: Path) -> None:
    """Delete the chunk files of tasks read in chunks (spill.py) that this run or a dead writer
    left; another live writer's (a slice on another node) are not touched."""
    now, d = time.time(), out_dir / PIECES_DIR
    for name in safe_names(d):
        m = _SPILL.fullmatch(name)
        if m and (_writer(m).rpartition(".")[2] == str(os.getpid()) or temp_is_stale(d / name, _writer(m), now)):
            (d / name).unlink(missing_ok=True)


def remove_stale_temps(out_dir: Path) -> int:
    """Delete temp and chunk files whose writer is gone (common/format.py: ``temp_is_stale``); how many."""
    now, removed = time.time(), 0
    for sub, pattern in _TEMPS.items():
        d = out_dir / sub
        for name in safe_names(d):
            m = pattern.fullmatch(name) or (_SPILL.fullmatch(name) if sub == PIECES_DIR else None)
            if m and temp_is_stale(d / name, _writer(m), now):
                (d / name).unlink(missing_ok=True)
                removed += 1
    return removed


def remove_unreferenced(out_dir: Path, manifest: Manifest | None, leased: set[str] = frozenset()) -> int:
    """Delete pieces the manifest does not name (None: a retired split, which names none), and temp files
    of dead writers; how many went. ``leased``: files a running training job reads (common/leases.py), kept too.

    Only files with this tool's own names, only in the split's own dirs, and
    never through a symlink: whatever else a user put there stays. Runs
    under the cache's exclusive lock, so no slice of this cache is running;
    a temp file is still deleted only once its writer is gone, in case the
    lock does not hold across hosts (see README: shared file systems).
    """
    keep: set[str] = set(leased)
    for p in manifest.pieces if manifest is not None else ():
        keep |= {f.path for f in p.arrays()} | {piece_record_name(p.key)}
        if p.blocks:
            keep.add(blocks_record_name(p.blocks.key))
    if out_dir.is_symlink():
        return 0
    removed = remove_stale_temps(out_dir)
    for sub, pattern in _FINAL.items():
        d = out_dir / sub
        for name in safe_names(d):
            if f"{sub}/{name}" not in keep and pattern.fullmatch(name):
                (d / name).unlink()
                removed += 1
        if sub in LEGACY_DIRS and d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()  # a format-1 cache's dir, now empty
    return removed
