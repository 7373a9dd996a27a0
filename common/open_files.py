"""The files one process holds open to read caches: at most a budget set from its limits, least
recently used closed first.

Why a budget: a cache holds a piece per ~``--task_size_mb`` of text (and one per large file), so a few
hundred GB is thousands of pieces and each has two files to read from. Held open (or memory-mapped:
CPython's mmap keeps a descriptor per map, and each map is one of ``vm.max_map_count``'s 65,530
entries), they end training at its first step with "Too many open files" under ``ulimit -n 1024``,
the soft limit many login nodes and Slurm jobs start with, and past 32,765 pieces whatever the limit.
Reads are ``pread`` calls on a descriptor from this pool instead: no map at all, and at most
``budget()`` descriptors, in the main process and in each DataLoader worker alike (each counts its
own, inherited ones included). A read of a closed file costs an ``open`` (about 2 us); a hit costs
nothing but a dict move (bench/pieces.py measures both).
"""

from __future__ import annotations

import errno
import os
import resource
from collections import OrderedDict

from common.errors import UserError
from common.format import READ_FLAGS

MAX_OPEN = 1 << 15  # a cap where the limit is huge: enough for every file of a 16,000-piece split
MIN_RESERVE, MAX_RESERVE = 64, 1024  # descriptors left to the rest of the process (pipes, checkpoints, logs)


def open_count() -> int:
    """Descriptors this process has open now (Linux; elsewhere a guess that errs high)."""
    for d in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(d)) - 1  # less the one listing it
        except OSError:
            continue
    return 256


def nofile_limit() -> int:
    """The soft RLIMIT_NOFILE, MAX_OPEN * 2 where unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_OPEN * 2 if soft == resource.RLIM_INFINITY else int(soft)


def budget() -> int:
    """How many cache files this process may hold open: its soft limit less what is open now, less a
    quarter of the limit (between MIN_RESERVE and MAX_RESERVE) for the Trainer, DataLoader pipes and
    checkpoints; at least 1, at most MAX_OPEN."""
    soft = nofile_limit()
    reserve = min(max(MIN_RESERVE, soft // 4), MAX_RESERVE)
    return max(1, min(MAX_OPEN, soft - open_count() - reserve))


def raise_soft_limit() -> str | None:
    """Raise the soft RLIMIT_NOFILE to the hard one; a note saying so, or None where there was nothing
    to raise. Only a help: the pool stays within whatever limit there is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_OPEN * 2 if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN * 2)
    if soft != resource.RLIM_INFINITY and soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return None
    return (f"note: open-file limit raised from {soft:,} to {target:,} (ulimit -n; the hard limit allows it): "
            "fewer cache files reopened")


class OpenFiles:
    """Descriptors of cache files by path, at most ``budget()``; one per process (``pool()``)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.limit = budget()
        self._fds: OrderedDict[str, int] = OrderedDict()

    def fd(self, path: str) -> int:
        """An open descriptor of ``path`` (read-only), the least recently used closed if over the limit."""
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        while len(self._fds) >= self.limit:
            self._close_oldest()
        fd = self._open(path)
        self._fds[path] = fd
        return fd

    def _open(self, path: str) -> int:
        """Open ``path``; where the process is out of descriptors (something else took them since the
        budget was set), close half of ours and retry, and only with none left say which limit to raise."""
        while True:
            try:
                return os.open(path, READ_FLAGS)
            except OSError as e:
                if e.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                if not self._fds:
                    which = ("this process's open-file limit (ulimit -n "
                             f"{nofile_limit():,})" if e.errno == errno.EMFILE else "the system's open-file limit")
                    raise UserError(f"cannot open {path}: {which} is used up by other files; raise it (e.g. "
                                    "`ulimit -n 65536` in the job script) and rerun") from None
                for _ in range(max(1, len(self._fds) // 2)):  # at least one each time: the loop ends
                    self._close_oldest()
                self.limit = max(1, len(self._fds))

    def _close_oldest(self) -> None:
        _, fd = self._fds.popitem(last=False)
        os.close(fd)

    def close(self, prefix: str = "") -> None:
        """Close the descriptors of paths starting with ``prefix`` (all by default)."""
        for path in [p for p in self._fds if p.startswith(prefix)]:
            os.close(self._fds.pop(path))

    def __len__(self) -> int:
        return len(self._fds)


_POOL: OpenFiles | None = None


def pool() -> OpenFiles:
    """This process's pool. A forked DataLoader worker keeps the descriptors it inherited (pread needs
    no file position, so sharing them is safe) and sets its own budget from its own count."""
    global _POOL
    if _POOL is None:
        _POOL = OpenFiles()
    elif _POOL.pid != os.getpid():
        _POOL.pid, _POOL.limit = os.getpid(), budget() + len(_POOL)
        while len(_POOL) > _POOL.limit:
            _POOL._close_oldest()
    return _POOL
