"""Find the input shards and cut them into tasks for the worker pool.

A task is a byte range ``[start, end)`` of one shard whose ends sit just after
a ``\\n`` (or at the file's ends), found in binary mode: text-mode ``tell()``
is an opaque cookie, not a byte offset. Small shards are one task; big ones
are cut into ranges of about ``task_bytes`` so every core stays busy and a
worker's memory is bounded by the task, not the shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError


@dataclass(frozen=True)
class Task:
    shard: int  # index into the split's sorted shard list
    path: str
    start: int
    end: int
    last: bool  # the shard's final task: its arrays can be committed after it


def list_shards(input_dir: str, ext: str, flag: str = "--train_dir") -> list[Path]:
    """Every ``*.<ext>`` file directly in ``input_dir``, sorted by name, each checked readable."""
    d = Path(input_dir)
    if not d.exists():
        raise UserError(f"{flag} {input_dir}: no such directory")
    if not d.is_dir():
        raise UserError(f"{flag} {input_dir}: not a directory")
    shards = sorted(p for p in d.glob(f"*.{ext}") if not p.is_dir())
    if not shards:
        others = sorted({p.suffix for p in d.iterdir() if p.is_file()})
        subdirs = [p.name for p in d.iterdir() if p.is_dir()]
        if others:
            hint = f" (it has {', '.join(others)} files: pass the shards' extension with --ext)"
        elif subdirs:
            hint = f" (only subdirectories, e.g. {subdirs[0]}/: the shards must be directly in the dir)"
        else:
            hint = " (it is empty)"
        raise UserError(f"{flag} {input_dir}: no *.{ext} files{hint}")
    for p in shards:
        try:
            with open(p, "rb") as f:
                f.read(1)
        except OSError as e:
            raise UserError(f"{p}: not readable ({e.strerror}); fix it or move it out of {input_dir}") from None
    return shards


def _next_line_start(f, pos: int, size: int) -> int:
    """The first byte offset >= pos that starts a line (or ``size``)."""
    if pos <= 0:
        return 0
    f.seek(pos - 1)
    while True:
        chunk = f.read(1 << 16)
        if not chunk:
            return size
        i = chunk.find(b"\n")
        if i >= 0:
            return f.tell() - len(chunk) + i + 1
        # a line longer than 64 KiB: keep scanning


def plan_tasks(shards: list[tuple[int, Path]], task_bytes: int) -> list[Task]:
    """Newline-aligned byte ranges covering each (index, path) shard exactly once, in order."""
    tasks: list[Task] = []
    for index, path in shards:
        size = path.stat().st_size
        bounds = [0]
        with open(path, "rb") as f:
            while bounds[-1] < size:
                nxt = _next_line_start(f, bounds[-1] + task_bytes, size)
                bounds.append(nxt)
        if size == 0:
            bounds.append(0)
        for k in range(len(bounds) - 1):
            tasks.append(Task(index, str(path), bounds[k], bounds[k + 1], k == len(bounds) - 2))
    return tasks
