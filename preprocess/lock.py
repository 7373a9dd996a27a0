"""One writer per cache dir: an flock()ed file, released by the kernel even on SIGKILL."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import UserError
from common.format import LOCK_NAME

_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


@contextmanager
def cache_lock(cache_dir: Path) -> Iterator[bool]:
    """Hold the cache's lock, or fail at once naming the process that holds it.

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
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"{cache_dir} is being written by another preprocess run (pid {holder}); "
                "wait for it to finish, or use another --datasets_cache_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing releases the lock
