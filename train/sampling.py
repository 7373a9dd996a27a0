"""The sampler the Trainer reads: a stream of ``(g, block)`` pairs from train/order.py, cut into Trainer epochs.

``g`` is the global sample index: the stream is the same on any number of
processes (the Trainer and accelerate deal its batches out to processes and
micro-batches), and the collator keys each block's masks by ``g``
(train/collator.py). A Trainer epoch is a whole number of optimizer steps
(the blocks of the run's corpora, rounded down to the global batch; the
stream goes on across it, so nothing is dropped), and the sampler keeps its
own place in the stream: a resumed run starts it at the first unseen sample,
whatever the checkpoint's global batch, without walking the samples before
it (the Trainer's own skip is turned off, train/run.py).

Grouping by length costs model quality: batches of similar lengths are
batches of similar text (a piece's last, short block with the other last
blocks). bench/train_quality.py measures it; README: Training quality.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from train.order import DataOrder

# Which block sample g is and how it is masked; recorded in checkpoints, so a resume across a change says so.
ORDER_RULE = "computed-1"
CHUNK = 1 << 14  # samples worked out at a time


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


def global_batch(args: object) -> int:
    """Samples a step trains on: per-device batch x processes x accumulation (TrainingArguments)."""
    return args.per_device_train_batch_size * max(args.world_size, 1) * args.gradient_accumulation_steps


def steps_per_epoch(n_blocks: int, batch: int) -> int:
    """Optimizer steps a Trainer epoch holds: whole global batches, at least one (the stream goes on past it)."""
    return max(n_blocks // batch, 1)


def epochs_done(samples: int, n_blocks: int, batch: int) -> float:
    """Trainer epochs that ``samples`` trained samples make: the epoch the Trainer logs, counted from the samples
    so it goes on across a resume (the Trainer counts it from the resumed epoch's start: step 70 of a run
    resumed at step 60 logged epoch 0.0023 after 0.014), and written as the Trainer writes it, whole epochs plus
    a fraction (``epoch + step / steps``): the same float as an uninterrupted run's, bit for bit."""
    per_epoch = steps_per_epoch(n_blocks, batch) * batch
    return samples // per_epoch + samples % per_epoch / per_epoch


class SampleSampler(Sampler[tuple[int, int]]):
    """``(g, block)`` for ``len(self)`` samples a Trainer epoch, from ``start`` on, continuing where it stopped."""

    def __init__(self, order: DataOrder, start: int = 0):
        self.order = order
        self.per_epoch = steps_per_epoch(order.n_blocks, order.global_batch) * order.global_batch
        self.cursor = start

    @property
    def lengths(self) -> np.ndarray | None:
        return self.order.lengths

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the stream's place is the sampler's own (a resumed Trainer counts epochs from its step)."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.cursor
        self.cursor += self.per_epoch
        for at in range(first, first + self.per_epoch, CHUNK):
            n = min(CHUNK, first + self.per_epoch - at)
            yield from zip(range(at, at + n), self.order.blocks(at, n).tolist())

    def __len__(self) -> int:
        return self.per_epoch


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
