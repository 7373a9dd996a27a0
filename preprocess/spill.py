"""A task's output in chunks: the first in memory, the rest in files beside the pieces.

A compressed shard cannot be cut into byte ranges, so one task reads it all;
a Ray task's result travels through the object store. Either way only a
small record (the chunks' counts, without arrays) goes back to whoever
assembles the piece, which reads the arrays back in order (``chunks_of``),
so neither a worker nor the assembler holds more than a chunk however big
the file. The files are deleted once their piece is committed, or by the
cleanup once their writer is gone (cache_dir.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from common.format import OFFSET_DTYPE, writer_id
from preprocess.tasks import Part, Task, TaskResult, empty_result

SPILL_PREFIX = ".spill-"  # <pieces dir>/.spill-<host>.<pid>-<n>.tokens|.lengths: deleted once appended, or by cleanup
_SPILLS = 0


class Chunks:
    """The results of one task read in chunks, as one result (``result``)."""

    def __init__(self, task: Task, dtype: np.dtype):
        self.task, self.dtype = task, dtype
        self.first: TaskResult | None = None
        self.parts: list[Part] = []
        self.files: list[Any] = []

    def add(self, r: TaskResult) -> None:
        if self.first is None and not self.parts and not self.files:
            self.first = r
            return
        if not self.files:
            self._open()
        for r0 in ([self.first] if self.first is not None else []) + [r]:
            self.files[0].write(np.ascontiguousarray(r0.tokens).data)
            self.files[1].write(np.ascontiguousarray(r0.line_lengths, OFFSET_DTYPE).data)
            # fresh empty arrays: a [:0] view would keep every chunk's arrays alive until the task ends
            self.parts.append(Part(replace(r0, tokens=np.empty(0, r0.tokens.dtype),
                                           line_lengths=np.empty(0, OFFSET_DTYPE)),
                                   len(r0.tokens), len(r0.line_lengths)))
        self.first = None

    def _open(self) -> None:
        global _SPILLS
        _SPILLS += 1
        base = Path(self.task.reading.spill_dir) / f"{SPILL_PREFIX}{writer_id()}-{_SPILLS}"
        base.parent.mkdir(parents=True, exist_ok=True)
        self.files = [open(f"{base}.tokens", "wb"), open(f"{base}.lengths", "wb")]

    def result(self, nbytes: int) -> TaskResult:
        if not self.parts:
            r = self.first or empty_result(self.task, self.dtype)
            r.nbytes, r.last = nbytes, self.task.last
            return r
        names = tuple(f.name for f in self.files)
        for f in self.files:
            f.close()
        return replace(empty_result(self.task, self.dtype), nbytes=nbytes, parts=self.parts, spill=names,
                       open_end=self.parts[-1].result.open_end)

    def discard(self) -> None:
        for f in self.files:
            f.close()
            Path(f.name).unlink(missing_ok=True)


def spilled(r: TaskResult, task: Task) -> TaskResult:
    """``r`` with its arrays in chunk files beside the pieces (as a task read in chunks leaves them),
    so only a small record travels: a Ray task's result goes through the object store."""
    if r.spill is not None or r.changed:
        return r
    chunks = Chunks(task, r.tokens.dtype)
    chunks._open()
    chunks.add(r)
    return chunks.result(r.nbytes)


def chunks_of(r: TaskResult) -> Iterator[TaskResult]:
    """The results a task's result stands for, in order, arrays in memory: itself, or each of its
    parts with its arrays read back from the spill files (kept: a retried assembly must find them
    again; ``remove_spill`` once the piece is committed)."""
    if r.spill is None or r.parts is None:
        yield r
        return
    tok_path, len_path = r.spill
    dtype = r.tokens.dtype
    t = n = 0
    for part in r.parts:
        tokens = np.fromfile(tok_path, dtype=dtype, count=part.n_tokens, offset=t * dtype.itemsize)
        lengths = np.fromfile(len_path, dtype=OFFSET_DTYPE, count=part.n_lines, offset=n * OFFSET_DTYPE.itemsize)
        t, n = t + part.n_tokens, n + part.n_lines
        yield replace(part.result, tokens=tokens, line_lengths=lengths)


def remove_spill(r: TaskResult) -> None:
    for path in r.spill or ():
        Path(path).unlink(missing_ok=True)
