"""Map-style datasets over a preprocessed split, for the Hugging Face Trainer.

Both are thin views over ``common.reader.SplitReader``: no tokenization, no
Python loop over tokens, files opened lazily in whichever process reads
(within its open-file limit, however many pieces the split has), and
``len()`` known up front so a resumed run's sampler skips without reading.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.format import FormatError
from common.manifest import Manifest
from common.reader import SplitReader

_SETTLED_PID = 0  # the process whose signal handling was settled (a forked worker starts with its parent's)


def _settle_process() -> None:
    """Once per process: a DataLoader worker leaves SIGTERM/SIGUSR1 to the main process, which saves a
    checkpoint on them (train/preemption.py); a worker killed by Slurm's signal would fail that last step."""
    global _SETTLED_PID
    if _SETTLED_PID != os.getpid():
        _SETTLED_PID = os.getpid()
        if torch.utils.data.get_worker_info() is not None:
            from train.preemption import ignore_in_worker

            ignore_in_worker()


def _reader(split_dir: str | Path, max_seq_length: int, manifest: Manifest | None) -> SplitReader:
    reader = SplitReader(split_dir, manifest)
    built = reader.manifest.parameters.max_seq_length
    if built != max_seq_length:
        raise FormatError(
            f"{split_dir}: blocks were packed for --max_seq_length {built}, training asked for {max_seq_length}; "
            "rerun preprocessing with the new value (only the packing is redone)"
        )
    return reader


class MemmapConcatFullSentenceTextDataset(Dataset):
    """FULL-SENTENCES blocks: consecutive whole lines, ``<s> ... </s>``, at most max_seq_length ids.

    The block index is read into memory on first use (``SplitReader.block_table``: 16 bytes a block,
    inherited by forked DataLoader workers), so each block is one read of its tokens.
    """

    def __init__(self, split_dir: str | Path, max_seq_length: int, manifest: Manifest | None = None):
        self.reader = _reader(split_dir, max_seq_length, manifest)
        self._table: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.reader.n_blocks

    def _blocks(self) -> tuple[np.ndarray, np.ndarray]:
        if self._table is None:
            self._table = self.reader.block_table()
        return self._table

    def __getitem__(self, i: int) -> torch.Tensor:
        _settle_process()
        if not 0 <= i < len(self):
            raise IndexError(f"block {i} out of range 0..{len(self) - 1}")
        starts, lengths = self._blocks()
        s = int(starts[i])
        return torch.from_numpy(self.reader.framed(self.reader.piece_of(i), s, s + int(lengths[i]) - 2))

    def lengths(self) -> np.ndarray:
        """Every example's length in ids, bos and eos included, read from the block index once."""
        return self._blocks()[1]


class MemmapLineByLineTextDataset(Dataset):
    """One line per example, ``<s> line </s>``; a line longer than a block is served in pieces, never cut off."""

    def __init__(self, split_dir: str | Path, max_seq_length: int, manifest: Manifest | None = None):
        self.reader = _reader(split_dir, max_seq_length, manifest)
        self.shard, self.start, self.end = self.reader.line_examples(max_seq_length)

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, i: int) -> torch.Tensor:
        _settle_process()
        return torch.from_numpy(self.reader.framed(int(self.shard[i]), int(self.start[i]), int(self.end[i])))

    def lengths(self) -> np.ndarray:
        """Every example's length in ids, bos and eos included."""
        return self.end - self.start + 2


DATASET_TYPES = {cls.__name__: cls for cls in (MemmapConcatFullSentenceTextDataset, MemmapLineByLineTextDataset)}


class ConcatBlocks(Dataset):
    """The blocks of several corpora one after the other: the run's block ``i`` is block ``i - offset`` of the
    corpus whose range holds it (train/order.py deals out the global indices)."""

    def __init__(self, parts: list[Dataset]):
        self.parts = parts
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self._starts = self.offsets.tolist()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        k = bisect.bisect_right(self._starts, i) - 1
        if not 0 <= i < len(self) or k >= len(self.parts):
            raise IndexError(f"block {i} out of range 0..{len(self) - 1}")
        return self.parts[k][i - self._starts[k]]

    def lengths(self) -> np.ndarray:
        return np.concatenate([p.lengths() for p in self.parts]) if self.parts else np.empty(0, np.int64)
