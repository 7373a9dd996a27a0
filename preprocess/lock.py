"""One committing writer per cache dir: an flock()ed file, released by the kernel even on SIGKILL.

A plain run (which commits manifests and deletes what they no longer name)
holds it exclusively; slices of one sliced build (``--slice``) hold it shared,
so they run together but never beside a commit, and a commit never deletes
what a running slice is writing.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import UserError
from common.format import LOCK_NAME, writer_id, writer_words

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
