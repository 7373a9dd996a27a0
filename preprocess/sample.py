"""A seeded sample of a corpus's text, read as preprocess reads it: what a tokenizer is trained on.

The sample is drawn uniformly over every shard and every part of every
shard, through the same listing, scan, byte ranges, readers and cleaning as
``mlm-preprocess`` (so the tokenizer sees exactly the text the cache will
encode), and it is the same for the same corpus and seed whatever
``--num_workers``:

* every line gets a key in [0, 1): a task's lines share the task's key
  (hash of seed, corpus, shard name and range start) where a task can be
  skipped unread (uncompressed text and JSON Lines ranges, Parquet row
  groups); a compressed stream, read whole anyway, keys each line (hash of
  seed, corpus, shard, line number), or in JSON Lines each record (its line
  number in the stream), so that a record under no threshold is never parsed;
* a corpus's sample is its lines of the smallest keys, ``target`` bytes of
  UTF-8 text: the bottom of the key order, so it does not depend on the
  order tasks were read in;
* only tasks whose key lies under a threshold are read (and only lines under
  it kept): ``1.1 x target / the corpus's stored bytes`` at first, doubled
  while the lines read fall short. Memory holds about the sample, never the
  corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xxhash
from tqdm import tqdm

from common.errors import UserError
from preprocess.readers import Batch, read_task
from preprocess.scan import scan_shards
from preprocess.tasks import Reading, Task, tasks_of
from preprocess.workers import Workers

MIN_TASK_BYTES, MAX_TASK_BYTES = 4 << 10, 4 << 20


def task_bytes(sample_bytes: int) -> int:
    """Ranges small enough that a sample is drawn from at least ~500 parts of the corpus, not from a few
    big ones; at most preprocess's 4 MiB, at least 4 KiB (a range is one read)."""
    return max(MIN_TASK_BYTES, min(MAX_TASK_BYTES, sample_bytes // 512))


def _key(*parts: object) -> float:
    """A uniform number in [0, 1) from ``parts``: the same on every machine and in every process."""
    return xxhash.xxh3_64_intdigest("\0".join(map(str, parts)).encode()) / 2.0**64


def _keys(*parts: object) -> Callable[[object], float]:
    """``_key(*parts, last)`` as a function of ``last``, its common part encoded once (a key a line)."""
    prefix = "\0".join(map(str, (*parts, ""))).encode()
    return lambda last: xxhash.xxh3_64_intdigest(prefix + str(last).encode()) / 2.0**64


@dataclass(frozen=True)
class CorpusFiles:
    """One corpus as preprocess lists it: (name, path, format) of each shard."""

    name: str
    shards: list[tuple[str, Path, object]]

    @property
    def stored_bytes(self) -> int:
        return sum(p.stat().st_size for _, p, _ in self.shards)


@dataclass
class Drawn:
    """A corpus's sample: its lines, in key order, with their UTF-8 bytes, and what was read to draw them."""

    lines: list[str]
    text_bytes: int
    read_bytes: int
    everything: bool  # the whole corpus was read and kept: it is smaller than its target
    shards: list[tuple[str, int, str]]  # (name, bytes, content digest) of every shard, as preprocess records them
    # What reading found, per shard read: (bytes read, invalid UTF-8 sequences replaced, records without text)
    faults: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def _skippable(task: Task) -> bool:
    return task.fmt.kind == "parquet" or not task.fmt.codec


def _read(job: tuple[Task, str, str, float, int]) -> tuple[list[tuple[float, int, str]], tuple[int, int, int]]:
    """(key, line number, line) of a task's lines under the threshold, and (the bytes read, the invalid
    UTF-8 sequences replaced, the records without text) as preprocess counts them: a skippable task
    is read whole (its lines share its key); a compressed stream keeps each line by its own key as it is
    decompressed, batch by batch, so a worker holds the lines kept, never the whole file's."""
    task, corpus, name, threshold, seed = job
    whole = _skippable(task)
    k_task = _key(seed, corpus, name, task.start)
    key = _keys(seed, corpus, name, task.start)
    out: list[tuple[float, int, str]] = []
    seen = invalid = bad = 0  # seen: lines of the task so far, a stream line's number, part of its key

    def emit(batch: Batch) -> None:
        nonlocal seen, invalid, bad
        invalid, bad = invalid + batch.invalid, bad + batch.bad
        records = batch.records  # a JSON Lines stream's: the lines of a record share its key
        for j, s in enumerate(batch.lines):
            k = k_task if whole else key(records[j] if records is not None else seen)
            if whole or k < threshold:
                out.append((k, seen, s))
            seen += 1

    keep = None if whole or task.fmt.kind != "jsonl" else (lambda record: key(record) < threshold)
    read = read_task(task, None, emit, keep)
    if read.changed:
        raise UserError(f"{task.path} changed while it was read (rewritten or cut); rerun once it is complete")
    return out, (read.nbytes, invalid, bad)


def _read_all(jobs: list) -> list:
    return [_read(j) for j in jobs]


class Readers:
    """The processes that read the sample's tasks, in task order: forked on entering (before any thread of
    this process starts), once for every corpus and round, and killed on leaving; ``processes`` 0: read in
    this process (a fork and the lines sent back cost more than reading a small sample: ``readers_for``)."""

    def __init__(self, processes: int):
        self.processes = processes
        self._workers: Workers | None = None

    def map(self, jobs: list) -> list:
        if self._workers is None:
            return _read_all(jobs)
        per = max(1, len(jobs) // (8 * self.processes))  # a message per task cost 0.2 s for 471 small ones
        chunks = self._workers.imap([jobs[i:i + per] for i in range(0, len(jobs), per)])
        return [r for chunk in chunks for r in chunk]

    def __enter__(self) -> Readers:
        if self.processes > 0:
            self._workers = Workers(self.processes, _read_all)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._workers is not None:
            self._workers.kill()
            self._workers = None


def draw(corpus: CorpusFiles, target: int, seed: int, column: str, readers: Readers,
         progress: Callable[[int], object] | None = None) -> Drawn:
    """``target`` bytes of ``corpus``'s text (all of it when it holds less), the lines of the smallest keys."""
    paths = [p for _, p, _ in corpus.shards]
    fmts = [f for _, _, f in corpus.shards]
    scans = scan_shards(paths, fmts, task_bytes(target), column)
    reading = Reading(column=column, task_bytes=task_bytes(target), select=None, spill_dir="")
    tasks = [(t, corpus.shards[i][0]) for i, (p, s, f) in enumerate(zip(paths, scans, fmts))
             for t in tasks_of(i, p, s, f, reading)]
    stored = max(sum(s.size for s in scans), 1)
    threshold, low = min(1.0, 1.1 * target / stored), 0.0
    found: list[tuple[float, int, int, str]] = []  # (key, task number, line number, line)
    faults: dict[int, tuple[int, int, int]] = {}  # task number -> what _read counted (a stream's: last round)
    read_bytes = 0
    while True:
        jobs = [(n, (t, corpus.name, name, threshold, seed)) for n, (t, name) in enumerate(tasks)
                if (not _skippable(t)) or low <= _key(seed, corpus.name, name, t.start) < threshold]
        results = readers.map([j for _, j in jobs])
        found = [f for f in found if _skippable(tasks[f[1]][0])]  # a stream is read again each round, whole
        for (n, _), (lines, counts) in zip(jobs, results):
            nbytes = counts[0]
            faults[n] = counts
            read_bytes += nbytes
            if progress is not None:
                progress(nbytes)
            found += [(k, n, i, s) for k, i, s in lines]
        have = sum(len(s.encode()) for *_, s in found)
        if have >= target or threshold >= 1.0:
            break
        low, threshold = threshold, min(1.0, threshold * 2)
    found.sort()
    lines, size = _first_bytes([s for *_, s in found], target)
    return Drawn(lines, size, read_bytes, everything=threshold >= 1.0 and len(lines) == len(found),
                 shards=[(corpus.shards[i][0], scan.size, scan.digest) for i, scan in enumerate(scans)],
                 faults=_by_shard(faults, tasks))


def _by_shard(faults: dict[int, tuple[int, int, int]], tasks: list[tuple[Task, str]]) -> dict[str, tuple[int, int, int]]:
    """``faults`` of each task summed per shard name."""
    out: dict[str, tuple[int, int, int]] = {}
    for n, counts in sorted(faults.items()):
        name = tasks[n][1]
        out[name] = tuple(a + b for a, b in zip(out.get(name, (0, 0, 0)), counts))
    return out


def held_out(lines: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(the lines a tokenizer trains on, the held-out ones its report measures), by a seeded hash of each
    line's text: a line and its copies fall on one side."""
    keep, test = [], []
    key = _keys(seed, "held out")
    for s in lines:
        (test if key(s) < fraction else keep).append(s)
    return keep, test


def sample_digest(lines: list[str]) -> str:
    """xxh3_128 of the sample's lines, newline-joined: what training.json records."""
    h = xxhash.xxh3_128()
    for s in lines:
        h.update(s.encode("utf-8", errors="surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def targets(sizes: dict[str, int], shares: dict[str, float], sample_bytes: int) -> dict[str, int]:
    """Each corpus's bytes of the sample: its share of ``sample_bytes``; when the corpora are smaller than the
    sample (as stored), each may give up to all of it: then every corpus is read whole. A corpus of share 0
    gives nothing (never read)."""
    if sum(sizes.values()) <= sample_bytes:
        return {n: sample_bytes if shares[n] > 0 else 0 for n in sizes}
    return {n: int(round(sample_bytes * shares[n])) for n in sizes}


def _first_bytes(lines: list[str], budget: float) -> tuple[list[str], int]:
    """The first of ``lines`` (key order: the bottom of the sample) up to ``budget`` UTF-8 bytes, as ``draw``
    takes them: the line that reaches the budget is the last."""
    kept, size = [], 0
    for s in lines:
        if size >= budget:
            break
        kept.append(s)
        size += len(s.encode("utf-8", errors="surrogatepass"))
    return kept, size


def balance(drawn: dict[str, Drawn], shares: dict[str, float]) -> list[str]:
    """Cut each corpus's lines so the text drawn is in ``shares`` (in place), when a corpus gave less than
    its share (it holds less text, or the whole corpus was read): the largest sample in the shares asked,
    not a bigger one in other shares. Only a corpus read whole can be short: one whose draw stopped at its
    target is over it by at most its last line, and cutting the others for that would be a false alarm.
    Returns the corpora that held less than their share, when others were cut for them."""
    weighed = {n: w for n, w in shares.items() if w > 0 and n in drawn}
    if not any(drawn[n].everything for n in weighed):  # each gave its target, to the line that reached it
        return []
    total = min(drawn[n].text_bytes / w for n, w in weighed.items())  # the largest sample in these shares
    over = [n for n, w in weighed.items() if drawn[n].text_bytes > total * w * 1.001]  # more than rounding
    for n in over:
        d = drawn[n]
        d.lines, d.text_bytes = _first_bytes(d.lines, total * weighed[n])
        d.everything = False
    return [n for n in weighed if n not in over] if over else []


def reading_bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, dynamic_ncols=True)
