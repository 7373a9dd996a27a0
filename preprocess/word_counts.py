"""Word counts for the word-level families (``newmm``, ``syllable``): PyThaiNLP's segmenter over the
sample's lines, in forked workers, which segment the held-out lines of the report too.

Each distinct line is segmented once and its words counted as often as the line occurs. Sums of
counts: the same whatever the worker count or the split into tasks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from common.segmenters import SEGMENTERS

COUNT_LINES = 2_000  # most lines a task: a few ms of PyThaiNLP each, so the pipes stay cheap
# Set before the pool forks, so the workers inherit them: (line, times seen), and the held-out lines
_COUNTED: list[tuple[str, int]] = []
_HELD: list[str] = []


def segmenter(kind: str) -> Callable[[str], list[str]]:
    """The segmenter of the word-level ``--tokenizer_type`` ``kind``: its class's, without importing the
    class (transformers: 0.8 s of a 4.4 s newmm run on the bench's 5 MB sample)."""
    return SEGMENTERS[kind]


def _count(kind: str, start: int, end: int) -> Counter:
    """Word counts of entries [start, end) of ``_COUNTED``."""
    segment = segmenter(kind)
    counts: Counter = Counter()
    for line, seen in _COUNTED[start:end]:
        words = [w for w in segment(line) if w and not w.isspace()]
        if seen == 1:
            counts.update(words)
        else:
            for w in words:
                counts[w] += seen
    return counts


def _work(task: tuple[str, str, int, int]) -> Counter | list[list[str]]:
    """One task, in a worker: ``("count", kind, start, end)``, the words of those ``_COUNTED`` entries; or
    ``("segment", kind, start, end)``, the segmenter's output for those ``_HELD`` lines."""
    what, kind, start, end = task
    if what == "count":
        return _count(kind, start, end)
    segment = segmenter(kind)
    return [segment(line) for line in _HELD[start:end]]


def tasks_for(kind: str, n: int, num_workers: int, what: str = "count") -> list[tuple[str, str, int, int]]:
    """Ranges over ``n`` entries: equal in size, at most ``COUNT_LINES`` each, as many as a multiple of
    ``num_workers``. The workers are handed tasks in turn (preprocess/workers.py), so equal tasks end
    together: a short last task left one worker idle while the other did two full ones."""
    if n == 0:
        return []
    count = -(-n // COUNT_LINES)
    count = -(-count // num_workers) * num_workers
    size = -(-n // count)
    return [(what, kind, i, min(i + size, n)) for i in range(0, n, size)]


def count_and_segment(kind: str, lines: list[str], held: list[str], num_workers: int,
                      ) -> tuple[Counter, dict[str, list[str]]]:
    """Word counts over ``lines``, and the segmenter's output for each distinct line of ``held`` (what the
    report measures), in ``num_workers`` processes (here for a single task).

    A task is a range of entries, never the lines: the forked workers inherit them, so the parent's sends
    stay tiny and never block while a worker is sending back its results (lines sent in the tasks
    deadlocked both sides on full pipes: bench/tokenizer_train.py). Each worker builds PyThaiNLP's
    dictionary trie on first use (newmm: 0.4 s and 73 MiB), all at once, as a pool of the library's own
    would; this process never needs it (the held-out lines are segmented in the workers too), where
    building it here first, before the fork or beside the sample's reading, cost its 0.4 s once more
    (bench/tokenizer_train.py, newmm on 20 MB: the report and the trie were 0.5 s of ours' 1.95 s more
    than the library's).
    """
    from contextlib import nullcontext

    from preprocess.workers import Workers

    _COUNTED[:] = Counter(lines).items()
    _HELD[:] = dict.fromkeys(held)
    tasks = [*tasks_for(kind, len(_COUNTED), num_workers), *tasks_for(kind, len(_HELD), num_workers, "segment")]
    total: Counter = Counter()
    segmented: list[list[str]] = []
    pooled = num_workers >= 2 and len(tasks) >= 2
    try:
        with Workers(min(num_workers, len(tasks)), _work) if pooled else nullcontext() as workers:
            for task, result in zip(tasks, workers.imap(tasks) if pooled else map(_work, tasks)):
                if task[0] == "count":
                    total.update(result)
                else:
                    segmented += result
        return total, dict(zip(_HELD, segmented))
    finally:
        _COUNTED.clear()
        _HELD.clear()


def count_words(kind: str, lines: list[str], num_workers: int) -> Counter:
    """Word counts over ``lines`` (``count_and_segment`` without held-out lines)."""
    return count_and_segment(kind, lines, [], num_workers)[0]


def with_segmented(segment: Callable[[str], list[str]], segmented: dict[str, list[str]]) -> Callable[[str], list[str]]:
    """``segment``, answering from ``segmented`` (``count_and_segment``'s) for the texts it holds: the report
    encodes a held-out line without segmenting it again, and without this process building the trie,
    unless a line holds a special token's text (its parts are then segmented here)."""
    return lambda text: segmented[text] if text in segmented else segment(text)
