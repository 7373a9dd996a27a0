"""Batch blocks into few shapes and mask them (BERT's 80/10/10), each block's masks a function of its sample key.

Both happen in the DataLoader (its workers, when there are any), in numpy,
so the training step only computes: nothing the step runs asks the GPU for a
value, and no host work is left to the main process between steps.

**Keys, not RNG state.** Every example arrives as ``(stream, key, ids)``: a training
sample's global index (train/sampling.py: epoch x blocks + position, the same
on any number of processes), an evaluation block's index. Every random
number is a counter-based hash of (``seed``, stream, key, position), so a
block's masks do not depend on the batch it lands in, on read-ahead, on the
number of workers or processes, or on the global RNG (which dropout alone
draws from, and a checkpoint restores exactly). Every evaluation masks its
blocks the same way, so eval losses at different steps differ only by the
weights.

**Few shapes.** A batch is padded to a multiple of ``pad_to_multiple_of`` ids
(64: at most 8 widths at 512), never past ``max_width``, and the
masked-positions-only head (train/model.py) runs on a number of rows fixed
by the batch's shape: ``rows x ceil(p x width)`` rounded up to 8, the
positions past the masked ones pointing at an unlabelled position (the loss
ignores them). Every new shape costs a kernel autotune, a cuDNN attention
graph, a ``torch.compile`` recompilation; with random batches at 512 almost
every batch is 512 wide.

**How many masked.** Each block's maskable positions (not bos/eos/pad/other
special ids) get exactly ``p x m`` masks, rounded up or down at random
(``E = p x m``): the original BERT's fixed count per sequence, unbiased,
where transformers' collator draws a Bernoulli per token. A block's masks
are its ``k`` maskable positions with the smallest hash values.

**Whole words** (``whole_word_mask``): the same rule over words instead of
positions: ``p x`` (the block's words) words, rounded at random, those whose
first piece has the smallest hash, every piece of each masked. 80/10/10 is
drawn per piece, as BERT's whole-word masking does, so every labelled
position keeps BERT's shares, and where every piece is a word (newmm) the
masks are those of plain masking, bit for bit. Word starts come from the
tokenizer's own marks (train/words.py). Evaluation masks pieces, as without
it: the yardstick stays the same.

**A rate schedule** (``RateSchedule``): training sample ``g``'s rate is that
of optimizer step ``g div global_batch``, linear from the first step to the
last; evaluation masks at ``p``, so eval losses compare across steps and
across runs of other recipes. Still a function of (seed, stream, key).
The head is sized for the highest rate of the eighth of the run the step is
in, so a run meets at most 8 head sizes per width. Whole words can mask
more pieces than ``p x width`` in a block; such a batch's head takes the
next rung of a ladder (x 1.25 each, up to every position): a few more
shapes, never a lost label, never a question to the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from train.words import WordMarks, WordStartError, word_marks

MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the chosen tokens; the other 10% are kept as they are (BERT)
TRAIN_STREAM, EVAL_STREAM = 0, 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_SALT_COUNT, _SALT_ORDER, _SALT_HOW, _SALT_ID = 0, 1, 2, 3  # how many, which positions, how each, the random id
SEGMENTS = 8  # a scheduled run's head is sized per eighth of the run: at most 8 sizes per width
LADDER = 1.25  # a whole-word batch whose masks overflow its head takes the next rung: x 1.25, up to every position


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 whose outputs pass statistical tests even for
    consecutive inputs (uint64 arithmetic wraps, as it should here). A new array; in place on it."""
    x = np.array(x, dtype=np.uint64)
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def sample_hashes(seed: int, streams: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """One 64-bit hash per (seed, stream, key): the root of every draw made for that sample."""
    root = mix64(np.array([seed % 2**64], dtype=np.uint64) * np.uint64(2) + np.asarray(streams, dtype=np.uint64))
    return mix64(root ^ mix64(np.asarray(keys, dtype=np.uint64) * _GOLDEN))


def draws(roots: np.ndarray, positions: np.ndarray, salt: int) -> np.ndarray:
    """The 64-bit draw for each (sample root, position) pair (broadcast), for one purpose (``salt``)."""
    return mix64(roots + (np.asarray(positions, dtype=np.uint64) * np.uint64(4) + np.uint64(salt)) * _GOLDEN)


def unit(bits: np.ndarray) -> np.ndarray:
    """64-bit draws as floats in [0, 1) (their top 53 bits)."""
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def padded_width(longest: int, multiple: int, max_width: int | None) -> int:
    """The batch's width: ``longest`` rounded up to ``multiple``, capped at ``max_width`` (never below ``longest``)."""
    width = -(-longest // multiple) * multiple
    return max(longest, min(width, max_width)) if max_width else width


def head_rows(rows: int, width: int, p: float) -> int:
    """How many rows the masked-positions head runs on for a batch of this shape: room for every block's
    masks (at most ``ceil(p x width)`` each), rounded up to 8."""
    return -(-rows * int(np.ceil(p * width)) // 8) * 8


def head_size(rows: int, width: int, p: float, needed: int) -> int:
    """``head_rows`` at rate ``p``, or, when more positions are masked (whole words can), at the first rung
    of ``p x 1.25^j`` that holds them: the top rung, rate 1, holds every position, so no label is lost."""
    n = head_rows(rows, width, p)
    while n < needed:
        p = min(p * LADDER, 1.0)
        n = head_rows(rows, width, p)
    return n


@dataclass(frozen=True)
class RateSchedule:
    """The training masking rate, linear in optimizer steps: ``start`` at the first step (0), ``end`` at the
    last (``steps - 1``) and after it. Sample ``g`` is trained at step ``g div global_batch``
    (train/sampling.py), so its rate is the same on any number of processes and after a resume.

    The rate is monotone in the step in floating point too (a step moves it by ``(end - start) / steps``,
    far more than a rounding error), so a step's rate lies between those of the first and last steps of
    its eighth of the run: what ``room`` sizes the head by. Were a rounding ever to add a mask, the head's
    ladder (``head_size``) would still hold it.
    """

    start: float
    end: float
    steps: int
    global_batch: int

    def rate(self, step: np.ndarray) -> np.ndarray:
        last = max(self.steps - 1, 1)
        done = np.minimum(step, last) / last  # the share of the run done: 0 at the first step, 1 at the last
        return np.where(done < 1.0, self.start + (self.end - self.start) * done, self.end)

    def room(self, step: np.ndarray) -> np.ndarray:
        """The highest rate of the eighth of the run ``step`` is in (its first or its last step's), which the
        head is sized for: 8 sizes over the run, and a rate never above its size."""
        n = max(self.steps - 1, 1) + 1
        j = np.minimum(step, n - 1) * SEGMENTS // n
        first, last = -(-j * n // SEGMENTS), -(-(j + 1) * n // SEGMENTS) - 1
        return np.maximum(self.rate(first), self.rate(last))

    def step(self, keys: np.ndarray) -> np.ndarray:
        return np.asarray(keys, dtype=np.uint64).astype(np.int64) // self.global_batch


def word_starts(ids: np.ndarray, maskable: np.ndarray, marks: WordMarks) -> np.ndarray:
    """Maskable positions where a word starts: the piece is marked as a start, or the one before it ends a
    word, or is not maskable (bos, the eos between lines, padding): (batch x width) bool."""
    after = np.ones_like(maskable)
    after[:, 1:] = ~maskable[:, :-1] | marks.ends[ids[:, :-1]]
    return maskable & (marks.starts[ids] | after)


def whole_words(chosen: np.ndarray, starts: np.ndarray, maskable: np.ndarray) -> np.ndarray:
    """Every maskable position whose word's first piece is ``chosen``: the word runs from its start to the
    next start or to a position that is not maskable (which the next word starts after)."""
    width = starts.shape[1]
    first = np.maximum.accumulate(np.where(starts, np.arange(width)[None, :], -1), axis=1)
    return maskable & (first >= 0) & np.take_along_axis(chosen, np.maximum(first, 0), axis=1)


class MlmCollator:
    """``(stream, key, ids)`` examples -> ``input_ids``, ``attention_mask``, ``labels`` (and ``head_positions``).

    Picklable: a DataLoader worker collates with its own copy.
    """

    def __init__(self, tokenizer: Any, special_ids: list[int], pad_id: int, mlm_probability: float = 0.15,
                 pad_to_multiple_of: int = 64, max_width: int | None = None, seed: int = 0,
                 head_positions: bool = False, *, schedule: RateSchedule | None = None, whole_word_mask: bool = False):
        if tokenizer.mask_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no mask token; masked-LM training needs one")
        rates = [("--mlm_probability", mlm_probability)]
        rates += [("--mlm_probability_schedule", r) for r in (schedule.start, schedule.end)] if schedule else []
        for name, p in rates:
            if not 0.0 < p <= 1.0:
                raise ValueError(f"{name} {p}: must be in (0, 1]")
        try:
            self.words = word_marks(tokenizer) if whole_word_mask else None  # once per tokenizer: per-id tables
        except WordStartError as e:
            raise ValueError(f"--whole_word_mask: {e}; train without --whole_word_mask, or with a tokenizer whose "
                             "pieces mark words (byte-level BPE, WordPiece, SentencePiece, newmm, syllable)") from None
        self.schedule = schedule
        self.special = np.array(sorted(set(special_ids) | {pad_id}), dtype=np.int64)
        self.pad_id = pad_id
        self.mask_id = int(tokenizer.mask_token_id)
        self.vocab_size = len(tokenizer)  # random replacement draws from every id, as transformers' collator does
        self.mlm_probability = mlm_probability
        self.multiple = max(int(pad_to_multiple_of or 1), 1)
        self.max_width = max_width
        self.seed, self.head_positions = seed, head_positions

    def pad(self, examples: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` (batch x width) and each example's length."""
        arrays = [np.asarray(x, dtype=np.int64) for x in examples]
        lengths = np.array([len(x) for x in arrays], dtype=np.int64)
        width = padded_width(int(lengths.max()), self.multiple, self.max_width)
        ids = np.full((len(arrays), width), self.pad_id, dtype=np.int64)
        for row, x in zip(ids, arrays):
            row[: len(x)] = x
        return ids, lengths

    def rates(self, streams: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's masking rate, and the rate its head is sized for: the schedule's for training samples,
        ``mlm_probability`` for evaluation (and for everything without a schedule)."""
        fixed = np.full(len(keys), self.mlm_probability)
        if self.schedule is None:
            return fixed, fixed
        train, step = np.asarray(streams) == TRAIN_STREAM, self.schedule.step(keys)
        return np.where(train, self.schedule.rate(step), fixed), np.where(train, self.schedule.room(step), fixed)

    def mask(self, ids: np.ndarray, lengths: np.ndarray, streams: np.ndarray, keys: np.ndarray
             ) -> dict[str, np.ndarray]:
        """``ids`` with each block's masks applied, ``labels`` (the original id where masked, else -100) and,
        when asked, the flat positions (into batch x width) the head runs on: a fixed number for the shape."""
        rows, width = ids.shape
        p, room = self.rates(streams, keys)
        roots = sample_hashes(self.seed, streams, keys)
        maskable = (np.arange(width)[None, :] < lengths[:, None]) & ~np.isin(ids, self.special)
        if self.words is None:
            units = maskable  # what is counted and drawn: positions
        else:  # training draws words; evaluation, the fixed yardstick, pieces
            units = np.where((np.asarray(streams) == TRAIN_STREAM)[:, None], word_starts(ids, maskable, self.words),
                             maskable)
        m = units.sum(axis=1)
        k = np.floor(p * m + unit(draws(roots, 0, _SALT_COUNT))).astype(np.int64)  # rounded at random: E[k] = p x m
        order = unit(draws(roots[:, None], np.arange(width)[None, :], _SALT_ORDER))
        order[~units] = 2.0  # never before a maskable position (a word's first piece)
        chosen = np.zeros_like(units)
        np.put_along_axis(chosen, np.argsort(order, axis=1, kind="stable"),
                          np.arange(width)[None, :] < np.minimum(k, m)[:, None], axis=1)  # the k smallest hashes
        if self.words is not None:
            chosen = whole_words(chosen, units, maskable)
        row_of, pos = np.nonzero(chosen)
        flat = row_of * width + pos  # ascending
        original = ids.reshape(-1)[flat]
        how = unit(draws(roots[row_of], pos, _SALT_HOW))
        random_ids = (draws(roots[row_of], pos, _SALT_ID) % np.uint64(self.vocab_size)).astype(np.int64)
        new = np.where(how < MASK_SHARE, self.mask_id,
                       np.where(how < MASK_SHARE + RANDOM_SHARE, random_ids, original))
        out_ids = ids.copy().reshape(-1)
        out_ids[flat] = new
        labels = np.full(rows * width, -100, dtype=np.int64)
        labels[flat] = original
        batch = {"input_ids": out_ids.reshape(rows, width), "labels": labels.reshape(rows, width)}
        if self.head_positions:
            batch["head_positions"] = self._fill(flat, labels, head_size(rows, width, float(room.max()), len(flat)))
        return batch

    @staticmethod
    def _fill(flat: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
        """``flat`` padded to ``n`` entries with an unlabelled position (every block's bos is one), which the
        loss ignores; when no position is unlabelled (every id masked), ``flat`` as it is."""
        spare = np.flatnonzero(labels == -100)
        if len(flat) >= n or not len(spare):
            return flat
        return np.concatenate([flat, np.full(n - len(flat), spare[0], dtype=flat.dtype)])

    def __call__(self, examples: list[tuple[int, int, Any]]) -> dict[str, torch.Tensor]:
        """A batch of ``(stream, key, ids)`` examples (train/sampling.py: ``Keyed``)."""
        streams = np.array([s for s, _, _ in examples], dtype=np.uint64)
        keys = np.array([k for _, k, _ in examples], dtype=np.uint64)
        ids, lengths = self.pad([x for _, _, x in examples])
        batch = self.mask(ids, lengths, streams, keys)
        batch["attention_mask"] = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
        return {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in batch.items()}

