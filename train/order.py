"""The data order as a function: which block global sample ``g`` is, computed, never materialised.

Three pieces, each O(1) memory in the number of samples:

* ``Permutation``: a seeded bijection of ``[0, n)`` (a 4-round Feistel
  network on the next even power of two, cycle-walking back into range),
  so pass ``p`` over a corpus of 600 million blocks is a function, not a
  600-million-entry array: position ``i`` of the pass is ``perm(i)``.
* ``Blend``: which corpus sample ``g`` comes from, and which of that corpus's
  samples it is. The weights are apportioned over a period of ``PERIOD``
  samples (largest remainders, each corpus at least one); inside a period
  the corpora are interleaved by Webster's rule (corpus ``c``'s ``i``-th
  sample at time ``(i + 1/2) / q_c``), so at every prefix each corpus's
  realised count is within one of its share (plus the weights' rounding to
  ``1 / PERIOD``). Megatron's blended index gets there by a loop over
  every sample ("the corpus furthest behind its share goes next"); here one
  period is sorted once and sample ``g`` is a lookup.
* ``DataOrder``: sample ``g`` -> (corpus, that corpus's ``j``-th sample) ->
  pass ``j div n_c``, position ``j mod n_c`` -> block ``perm_{c,pass}(pos)``.
  An upsampled corpus repeats only after all of it was seen; each pass is a
  fresh permutation. Keyed by the corpus's name, so adding a corpus leaves
  the order inside the others as it was.

Nothing here depends on the number of processes, the per-device batch or
gradient accumulation: only on the seed, the corpora's block counts, their
names and weights. ``group_by_length`` sorts each run of ``MEGA`` samples by
length, longest first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from train.collator import mix64

_GOLDEN_PASS = np.uint64(0x9E3779B97F4A7C15)
PERIOD = 1 << 20  # samples over which the weights are apportioned: shares exact to about 1e-6
ROUNDS = 4
MEGA = 1 << 14  # group_by_length: samples per sorted group, whatever the batch (a resume with another batch
# finds the same groups)
STRATEGIES = ("random", "sequential", "group_by_length")


def name_key(name: str) -> int:
    """A stable 64-bit key of a corpus name (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


class Permutation:
    """Seeded bijections of ``[0, n)``, one per pass, evaluated on arrays of (position, pass)."""

    def __init__(self, n: int, *key: int):
        if n < 1:
            raise ValueError("a permutation of nothing")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = np.random.SeedSequence([k % 2**64 for k in key]).generate_state(ROUNDS, np.uint64)

    def _round_trip(self, x: np.ndarray, keys: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(self.half), x & self.mask
        for k in keys:  # one round key per round, per element (its pass's)
            f = mix64(right ^ k)
            f &= self.mask
            f ^= left
            left, right = right, f
        left <<= np.uint64(self.half)
        left |= right
        return left

    def __call__(self, positions: np.ndarray, passes: np.ndarray | int = 0) -> np.ndarray:
        """Position ``positions[i]`` of pass ``passes[i]`` (a different permutation each pass)."""
        x = np.array(positions, dtype=np.uint64)
        passes = np.asarray(passes, dtype=np.uint64)
        one = passes.ndim == 0 or len(passes) == 0 or passes.min() == passes.max()  # the usual case: one pass
        salt = mix64((passes.reshape(-1)[:1] if one else passes) * _GOLDEN_PASS)
        keys = self.keys[:, None] ^ salt[None, :]  # (rounds, 1) or (rounds, len(x))
        out = self._round_trip(x, keys)
        outside = np.flatnonzero(out >= self.n)
        while len(outside):  # cycle-walking: the domain is < 4n, so a few more rounds at most, on a few values
            out[outside] = self._round_trip(out[outside], keys if one else keys[:, outside])
            outside = outside[out[outside] >= self.n]
        return out.view(np.int64)


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (largest remainders), every positive weight at least 1."""
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    exact = w * total
    q = np.maximum(np.floor(exact).astype(np.int64), (w > 0).astype(np.int64))
    short = total - int(q.sum())
    if short > 0:
        q[np.argsort(-(exact - q), kind="stable")[:short]] += 1
    while short < 0:  # the minimum of 1 took more than there was: take back from the largest
        q[int(np.argmax(q))] -= 1
        short += 1
    return q


class Blend:
    """Sample ``g`` -> (corpus, the index of that corpus's sample), by the weights."""

    def __init__(self, weights: list[float]):
        self.counts = apportion(np.asarray(weights, dtype=np.float64), PERIOD)  # per corpus, per period
        if len(self.counts) == 1:
            return  # one corpus: sample g is its g-th
        corpus = np.repeat(np.arange(len(self.counts)), self.counts)
        within = np.concatenate([np.arange(q) for q in self.counts])
        time = (2 * within + 1) / (2.0 * self.counts[corpus])  # Webster: exact for denominators <= 2^21
        order = np.argsort(time, kind="stable")  # ties: the corpus listed first
        self.corpus = corpus[order].astype(np.int32)
        self.within = within[order].astype(np.int64)

    def __call__(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.asarray(g, dtype=np.int64)
        if len(self.counts) == 1:
            return np.zeros(len(g), dtype=np.int32), g
        at = g & (PERIOD - 1)
        corpus = self.corpus[at]
        j = (g >> PERIOD.bit_length() - 1) * self.counts[corpus]
        j += self.within[at]
        return corpus, j


@dataclass(frozen=True)
class Corpus:
    """One corpus of the blend: its name, its blocks' lengths (or only their count: the order needs the lengths
    only to group by length) and where its blocks start in the run's block index."""

    name: str
    lengths: np.ndarray | None
    offset: int
    count: int | None = None

    @property
    def blocks(self) -> int:
        return len(self.lengths) if self.lengths is not None else int(self.count or 0)


class DataOrder:
    """Global sample ``g`` -> a block of the run's index (the corpora's blocks, one after the other)."""

    def __init__(self, corpora: list[Corpus], weights: list[float], strategy: str, seed: int, global_batch: int):
        if strategy not in STRATEGIES:
            raise ValueError(f"--train_sampling_strategy {strategy}: one of {', '.join(STRATEGIES)}")
        self.corpora, self.strategy, self.seed = corpora, strategy, seed
        self.global_batch = global_batch
        if strategy == "group_by_length" and any(c.lengths is None for c in corpora):
            raise ValueError("grouping by length needs the blocks' lengths")
        self.blend = Blend(weights)
        self._perms = [Permutation(c.blocks, seed, name_key(c.name)) if c.blocks else None for c in corpora]
        self.n_blocks = sum(c.blocks for c in corpora)
        have = corpora and all(c.lengths is not None for c in corpora)
        self.lengths = (corpora[0].lengths if len(corpora) == 1 else np.concatenate([c.lengths for c in corpora])
                        ) if have else None

    def _blocks(self, g: np.ndarray) -> np.ndarray:
        corpus, j = self.blend(g)
        if len(self.corpora) == 1:
            return self._in_corpus(0, j)
        out = np.empty(len(g), dtype=np.int64)
        for c in np.unique(corpus):
            at = np.flatnonzero(corpus == c)
            out[at] = self._in_corpus(int(c), j[at])
        return out

    def _in_corpus(self, c: int, j: np.ndarray) -> np.ndarray:
        """Corpus ``c``'s samples ``j`` -> blocks of the run's index: pass ``j div n``, position ``j mod n``."""
        corpus = self.corpora[c]
        passes, pos = np.divmod(j, corpus.blocks)
        if self.strategy == "sequential":
            return pos + corpus.offset
        return self._perms[c](pos, passes) + corpus.offset

    def blocks(self, first: int, count: int) -> np.ndarray:
        """The blocks of samples ``first .. first + count - 1``, in the order they are trained on."""
        if self.strategy != "group_by_length":
            return self._blocks(np.arange(first, first + count, dtype=np.int64))
        mega = MEGA
        lo, hi = first // mega * mega, -(-(first + count) // mega) * mega
        out = []
        for start in range(lo, hi, mega):
            group = self._blocks(np.arange(start, start + mega, dtype=np.int64))
            out.append(group[np.argsort(-self.lengths[group], kind="stable")])  # longest first, ties as drawn
        return np.concatenate(out)[first - lo : first - lo + count]
