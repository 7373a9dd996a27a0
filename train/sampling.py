"""Batches of similar length: less padding, the same data, an order that a checkpoint reproduces.

FULL-SENTENCES blocks are shorter than ``max_seq_length`` (mean 435 of 512
ids in bench/dataloader.py) and a batch is padded to its longest block, so
random batches spend a share of every step on pad positions. Here a seeded
random order is cut into megabatches of ``MEGA`` batches, each sorted by
length: consecutive batches hold similar lengths (transformers'
LengthGroupedSampler, with the lengths read from the index, not by loading
every example, and an order that is a function of (seed, epoch) alone, so a
resumed run sees the same batches).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

MEGA = 50  # batches per sorted group: more groups less padding, fewer keeps the order random


def batch_widths(lengths: np.ndarray, order: np.ndarray, batch_size: int, multiple: int = 8) -> np.ndarray:
    """The padded width of each batch of ``batch_size`` consecutive examples of ``order``."""
    n = len(order) // batch_size * batch_size  # the Trainer's last partial batch is as rare as it is small
    longest = lengths[order[:n]].reshape(-1, batch_size).max(axis=1)
    return -(-longest // multiple) * multiple


def pad_share(lengths: np.ndarray, order: np.ndarray, batch_size: int, multiple: int = 8) -> float:
    """Share of the positions computed that are padding, for batches cut from ``order``."""
    n = len(order) // batch_size * batch_size
    if n == 0:
        return 0.0
    computed = int(batch_widths(lengths, order, batch_size, multiple).sum()) * batch_size
    return 1.0 - int(lengths[order[:n]].sum()) / computed


class LengthGroupedSampler(Sampler[int]):
    """Every index once per epoch; runs of ``batch_size`` have similar lengths; seeded by (seed, epoch)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:  # accelerate calls it at each epoch
        self.epoch = epoch

    def order(self) -> np.ndarray:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.lengths))
        mega = MEGA * self.batch_size
        groups = [perm[i : i + mega] for i in range(0, len(perm), mega)]
        # longest first inside a group (stable, so ties keep the random order)
        return np.concatenate([g[np.argsort(-self.lengths[g], kind="stable")] for g in groups]) if groups else perm

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return len(self.lengths)
