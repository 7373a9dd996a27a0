"""Word counts of the word-level families (preprocess/word_counts.py): each distinct line segmented once,
the same counts as segmenting every line, on any number of workers."""

from __future__ import annotations

from collections import Counter

import pytest

from preprocess import word_counts
from preprocess.word_counts import COUNT_LINES, count_and_segment, count_words, segmenter, tasks_for
from tests.corpus import make_lines


@pytest.mark.parametrize("kind", ["newmm", "syllable"])
def test_counts_are_those_of_every_line_segmented_with_repeated_lines_on_one_or_two_workers(kind):
    lines = make_lines(2 * COUNT_LINES + 100, seed=5, max_words=10)
    lines += lines[:300] + lines[:7]  # lines seen twice and three times: segmented once, counted each time
    segment = segmenter(kind)
    every = Counter(w for line in lines for w in segment(line) if w and not w.isspace())
    assert count_words(kind, lines, 1) == every
    assert count_words(kind, lines, 2) == every
    assert every["the"] > 0 and any("\u0e01" <= w[0] <= "\u0e5b" for w in every) and " " not in every


def test_a_distinct_line_is_segmented_once(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(word_counts, "segmenter", lambda kind: lambda line: seen.append(line) or line.split())
    assert count_words("newmm", ["a b", "c", "a b", "a b"], 1) == {"a": 3, "b": 3, "c": 1}
    assert sorted(seen) == ["a b", "c"]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_held_out_lines_come_back_segmented_as_the_segmenter_does_and_counted_nowhere(workers):
    lines = make_lines(300, seed=5, max_words=10)
    held = make_lines(120, seed=9, max_words=12)
    held += held[:5]  # a line held out twice is segmented once
    counts, segmented = count_and_segment("newmm", lines, held, workers)
    segment = segmenter("newmm")
    assert segmented == {line: segment(line) for line in held} and len(segmented) == 120
    assert counts == count_words("newmm", lines, 1)  # the held-out lines add no count


def test_with_two_workers_this_process_segments_nothing(monkeypatch, tmp_path):
    """Each worker builds PyThaiNLP's trie, as the library's own pool would; this process never needs it (it
    cost newmm 0.4 s once more, built here before the fork or beside the sample's reading)."""
    import os

    calls = tmp_path / "calls"

    def recording(kind):
        def segment(line):
            with open(calls, "a") as f:  # the workers' calls too: they append to the same file
                f.write(f"{os.getpid()}\n")
            return line.split()
        return segment

    monkeypatch.setattr(word_counts, "segmenter", recording)
    counts, segmented = count_and_segment("newmm", ["a b", "c d", "a b"] * 1000, ["x y", "z"], 2)
    assert counts == {"a": 2000, "b": 2000, "c": 1000, "d": 1000} and segmented == {"x y": ["x", "y"], "z": ["z"]}
    pids = set(calls.read_text().split())
    assert pids and str(os.getpid()) not in pids, pids


def test_ctrl_c_while_workers_send_big_counts_ends_at_once_and_leaves_no_worker(monkeypatch):
    """Ctrl-C in this process while the workers are blocked sending counts bigger than a pipe holds: they
    are killed. Asked to end instead, each was waited on for 5 s (10 s after a Ctrl-C on the bench's newmm
    run), since nobody read what they were sending."""
    import time

    import psutil

    def big(task):
        return Counter({f"{task[2]}-{i:06d}": 1 for i in range(60_000)})  # ~1 MB pickled, a pipe holds 64 KB

    class Interrupted(Counter):
        def update(self, *args, **kwargs):
            if args and args[0] is not None and len(args[0]) == 60_000:  # the first worker's counts: Ctrl-C
                raise KeyboardInterrupt
            return super().update(*args, **kwargs)

    monkeypatch.setattr(word_counts, "_work", big)
    monkeypatch.setattr(word_counts, "Counter", Interrupted)
    monkeypatch.setattr(word_counts, "COUNT_LINES", 10)
    before = {c.pid for c in psutil.Process().children()}
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        count_and_segment("newmm", [f"line {i}" for i in range(200)], [], 2)
    assert time.monotonic() - start < 4  # killed, not waited on (5 s a worker)
    assert {c.pid for c in psutil.Process().children()} <= before


@pytest.mark.parametrize("n, workers", [(1, 2), (6_551, 2), (2 * COUNT_LINES, 2), (10_001, 3), (500, 1)])
def test_tasks_cover_every_entry_once_in_equal_parts_a_multiple_of_the_workers(n, workers):
    tasks = tasks_for("newmm", n, workers)
    assert [i for _, _, start, end in tasks for i in range(start, end)] == list(range(n))
    sizes = [end - start for _, _, start, end in tasks]
    assert max(sizes) <= COUNT_LINES and max(sizes) - min(sizes) <= max(sizes) // 2 + 1
    assert len(tasks) % workers == 0 or n < workers


@pytest.mark.timeout(120)
def test_counting_megabytes_of_lines_on_two_workers_does_not_deadlock():
    """Tasks of ~1 MB of lines each, as a real sample gives: the lines once travelled in the tasks, and the
    parent and both workers hung on full pipes (bench/tokenizer_train.py at its default size)."""
    import random
    import string

    rng = random.Random(0)  # many distinct words, so each worker's counts are big too
    lines = [" ".join("".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(60))
             for _ in range(3 * COUNT_LINES)]
    assert sum(len(s.encode()) for s in lines[:COUNT_LINES]) > 1 << 20
    assert count_words("newmm", lines, 2) == count_words("newmm", lines, 1)


def test_each_word_level_segmenter_is_its_tokenizer_classes_own():
    """word_counts segments with common/segmenters.py (no transformers import); the classes the train stage
    loads must segment with the very same functions, or the vocabulary would miss their words."""
    from common.segmenters import SEGMENTERS
    from common.tokenizer import TOKENIZER_TYPES
    from common.tokenizer_types import _WordLevelTokenizer

    word_level = {n for n, t in TOKENIZER_TYPES.items()
                  if n != "auto" and issubclass(t.tokenizer_class(), _WordLevelTokenizer)}
    assert word_level == set(SEGMENTERS) == {"newmm", "syllable", "fake_sefr_cut"}
    for name in word_level:
        assert TOKENIZER_TYPES[name].tokenizer_class().segment is SEGMENTERS[name] is segmenter(name)
