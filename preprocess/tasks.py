"""What a worker is given and what it returns: a task (a byte range or row groups of one shard) and its result.

Both are plain data that cross process and node boundaries (a forked
worker's pipe, Ray's object store), so they hold no open file or tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.format import OFFSET_DTYPE
from preprocess.formats import Format
from preprocess.scan import Scan


@dataclass(frozen=True)
class Reading:
    """How every task of a split reads its shard, fixed by the plan."""

    column: str  # the text's field or column, for records
    task_bytes: int  # the chunk size of a task read as a stream (scan.cut_stream)
    select: tuple[float, int, bool] | None  # a held-out split: (fraction, seed, this is the held-out side)
    spill_dir: str  # where a task whose output comes in several chunks keeps them (its split's pieces dir)


@dataclass(frozen=True)
class Task:
    shard: int  # index into the split's sorted shard list
    path: str
    start: int
    end: int
    last: bool  # the shard's final task: its arrays can be committed after it
    digest: str  # of bytes [start, end) when the run started: the worker tokenizes only these bytes
    fmt: Format  # how to read its shard: a split may mix formats
    reading: Reading
    starts_open: bool = False  # the range starts in the middle of a line the previous range began
    ends_open: bool = False  # the range ends in the middle of a line the next range finishes
    line_start: int = 0  # JSON Lines: lines of the file before ``start``; Parquet: rows before row group ``start``
    stamp: tuple[int, int] | None = None  # Parquet: the (size, mtime_ns) the run planned with


@dataclass
class TaskResult:
    shard: int
    last: bool
    nbytes: int
    tokens: np.ndarray  # token stream of the task's lines, separators included
    line_lengths: np.ndarray  # int64, tokens per line incl. its separator (the open last one: without)
    lines_without_tokens: int
    invalid_utf8: int
    unk: int = 0  # ids of the unknown token among ``tokens``
    unk_examples: list[str] = field(default_factory=list)  # the first few lines holding one, cut to 100 characters
    changed: bool = False  # the bytes read differ from those the run planned with: nothing was encoded
    open_end: bool = False  # the last line continues in the next task's result: it has no separator yet
    bad_records: int = 0  # records with no usable text (JSON Lines, Parquet) or damaged compressed data
    bad_examples: list[str] = field(default_factory=list)  # the first few, named by file and line or row
    text_bytes: int = 0  # UTF-8 bytes of the text these lines came from: the manifest's text_bytes
    parts: list[Part] | None = None  # a task read in chunks: each chunk's result, its arrays in ``spill``
    spill: tuple[str, str] | None = None  # (tokens, line lengths) files holding the parts' arrays, in order


@dataclass
class Part:
    """One chunk of a task read in several: its result without arrays, and how long they are."""

    result: TaskResult
    n_tokens: int
    n_lines: int


def empty_result(task: Task, dtype: np.dtype, nbytes: int = 0, changed: bool = False) -> TaskResult:
    """A result with no lines: a task of no text, or (``changed``) one whose bytes were not those planned."""
    return TaskResult(task.shard, task.last, nbytes, np.empty(0, dtype), np.empty(0, OFFSET_DTYPE), 0, 0,
                      changed=changed)


def tasks_of(index: int, path: Path, scan: Scan, fmt: Format, reading: Reading) -> list[Task]:
    """The tasks of shard ``index``: its scan's ranges, in order."""
    opened = set(scan.open_ends)
    return [Task(index, str(path), start, end, k == len(scan.ranges) - 1, digest, fmt, reading,
                 starts_open=start in opened, ends_open=end in opened,
                 line_start=scan.line_starts[k] if scan.line_starts else 0, stamp=scan.stamp)
            for k, (start, end, digest) in enumerate(scan.ranges)]
