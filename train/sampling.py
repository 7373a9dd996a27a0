"""The training data order: which block is global sample ``g``, the same on any number of processes.

Epoch ``e`` visits every block once, in an order that is a function of
(seed, e) alone: a seeded permutation (``random``, the default), the blocks
in index order (``sequential``), or the permutation cut into megabatches of
``MEGA`` batches, each sorted by length (``group_by_length``: consecutive
batches hold similar lengths, so less padding, as transformers'
LengthGroupedSampler, with the lengths read from the index).

The sampler yields ``(g, block)`` pairs, ``g = e x n_blocks + position``:
the Trainer and accelerate deal them out to processes and micro-batches
as they like, and the collator keys each block's masks by ``g``
(train/collator.py), so which block is sample ``g`` and how it is masked do
not depend on who reads it.

Grouping by length costs model quality: batches of similar lengths are
batches of similar text (a piece's last, short block with the other last
blocks). bench/train_quality.py measures it; README: Training quality.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

# Which block sample g is and how it is masked; recorded in checkpoints, so a resume across a change says so.
ORDER_RULE = "sample-keyed-1"
MEGA = 50  # batches per sorted group: more groups less padding, fewer keeps the order random
STRATEGIES = ("random", "sequential", "group_by_length")


def batch_widths(lengths: np.ndarray, order: np.ndarray, batch_size: int, multiple: int = 64,
                 max_width: int | None = None) -> np.ndarray:
    """The padded width of each batch of ``batch_size`` consecutive examples of ``order``, as the collator pads."""
    n = len(order) // batch_size * batch_size  # the Trainer's last partial batch is as rare as it is small
    longest = lengths[order[:n]].reshape(-1, batch_size).max(axis=1)
    width = -(-longest // multiple) * multiple
    return np.maximum(longest, np.minimum(width, max_width)) if max_width else width


def pad_share(lengths: np.ndarray, order: np.ndarray, batch_size: int, multiple: int = 64,
              max_width: int | None = None) -> float:
    """Share of the positions computed that are padding, for batches cut from ``order``."""
    n = len(order) // batch_size * batch_size
    if n == 0:
        return 0.0
    computed = int(batch_widths(lengths, order, batch_size, multiple, max_width).sum()) * batch_size
    return 1.0 - int(lengths[order[:n]].sum()) / computed


def epoch_order(lengths: np.ndarray, strategy: str, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The blocks of one epoch, in the order they are trained on."""
    n = len(lengths)
    if strategy == "sequential":
        return np.arange(n)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    if strategy == "random":
        return perm
    mega = MEGA * batch_size
    groups = [perm[i : i + mega] for i in range(0, n, mega)]
    # longest first inside a group (stable, so ties keep the random order)
    return np.concatenate([g[np.argsort(-lengths[g], kind="stable")] for g in groups]) if groups else perm


class SampleSampler(Sampler[tuple[int, int]]):
    """``(g, block)`` for every block of the current epoch (``set_epoch``, which accelerate calls)."""

    def __init__(self, lengths: np.ndarray, strategy: str, batch_size: int, seed: int):
        if strategy not in STRATEGIES:
            raise ValueError(f"--train_sampling_strategy {strategy}: one of {', '.join(STRATEGIES)}")
        self.lengths = np.asarray(lengths)
        self.strategy, self.batch_size, self.seed, self.epoch = strategy, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        return epoch_order(self.lengths, self.strategy, self.batch_size, self.seed, self.epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.epoch * len(self.lengths)
        return zip(range(first, first + len(self.lengths)), self.order().tolist())

    def __len__(self) -> int:
        return len(self.lengths)


class Keyed:
    """A dataset whose items are ``(stream, key, ids)`` for the collator: asked for ``(g, block)``
    (training) it answers with key ``g``; asked for a plain index (evaluation), with the index itself."""

    def __init__(self, dataset: object, stream: int):
        self.dataset, self.stream = dataset, stream

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[int, int, object]:
        key, block = index if isinstance(index, tuple) else (index, index)
        return self.stream, key, self.dataset[block]

    def lengths(self) -> np.ndarray:
        return self.dataset.lengths()

    @property
    def reader(self) -> object:
        return self.dataset.reader
