"""Word counts for the word-level families (``newmm``, ``syllable``): PyThaiNLP's segmenter over the
sample's lines, in forked workers.

Each distinct line is segmented once and its words counted as often as the line occurs. Sums of
counts: the same whatever the worker count or the split into tasks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from common.segmenters import SEGMENTERS

COUNT_LINES = 2_000  # most lines a task: a few ms of PyThaiNLP each, so the pipes stay cheap
_COUNTED: list[tuple[str, int]] = []  # (line, times seen), set before the pool forks: workers inherit it


def segmenter(kind: str) -> Callable[[str], list[str]]:
    """The segmenter of the word-level ``--tokenizer_type`` ``kind``: its class's, without importing the
    class (transformers: 0.8 s of a 4.4 s newmm run on the bench's 5 MB sample)."""
    return SEGMENTERS[kind]


def warm(kind: str) -> None:
    """Segment a word: PyThaiNLP builds its dictionary trie on first use (0.5 s for newmm), and forked
    workers then share the parent's."""
    segmenter(kind)("ภาษา")


def _count(task: tuple[str, int, int]) -> Counter:
    """Word counts of entries [start, end) of ``_COUNTED`` (in a worker)."""
    kind, start, end = task
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


def tasks_for(kind: str, n: int, num_workers: int) -> list[tuple[str, int, int]]:
    """Ranges over ``n`` entries: equal in size, at most ``COUNT_LINES`` each, as many as a multiple of
    ``num_workers``. The workers are handed tasks in turn (preprocess/workers.py), so equal tasks end
    together: a short last task left one worker idle while the other did two full ones."""
    if n == 0:
        return []
    count = -(-n // COUNT_LINES)
    count = -(-count // num_workers) * num_workers
    size = -(-n // count)
    return [(kind, i, min(i + size, n)) for i in range(0, n, size)]


def count_words(kind: str, lines: list[str], num_workers: int) -> Counter:
    """Word counts over ``lines``, in ``num_workers`` processes (here for a single task).

    A task is a range of entries, never the lines: the forked workers inherit them, so the parent's sends
    stay tiny and never block while a worker is sending back its counts (lines sent in the tasks
    deadlocked both sides on full pipes: bench/tokenizer_train.py). PyThaiNLP builds its dictionary trie
    on first use: done here before the fork, so the workers inherit it rather than each building its own,
    and the parent, which needs it after (loading back, the report), builds it once.
    """
    from preprocess.workers import Workers

    warm(kind)
    _COUNTED[:] = Counter(lines).items()
    tasks = tasks_for(kind, len(_COUNTED), num_workers)
    total: Counter = Counter()
    try:
        if num_workers < 2 or len(tasks) < 2:
            for task in tasks:
                total.update(_count(task))
            return total
        workers = Workers(min(num_workers, len(tasks)), _count)
        try:
            for counts in workers.imap(tasks):
                total.update(counts)
        finally:
            workers.close()
        return total
    finally:
        _COUNTED.clear()
