"""Read a preprocessed split: the one place that turns the files into blocks and lines.

Nothing is memory-mapped: a block is read with ``pread`` on descriptors from
this process's bounded pool (common/open_files.py), so a split of any number
of pieces reads within the process's open-file limit and no map count
applies. ``block(i)`` reads its row of the block index, then its tokens;
training holds the block index in memory (``block_table``) and reads only
the tokens (``framed``). Each file's header and size are checked once per
process, when it is first opened there; a read that comes back short is a
FormatError.
"""

from __future__ import annotations

import bisect
import math
import os
import struct
from pathlib import Path

import numpy as np

from common.format import OFFSET_DTYPE, READ_FLAGS, FormatError, check_npy, unreadable
from common.manifest import FileInfo, Manifest, load_manifest
from common.open_files import OpenFiles, pool
from common.packing import line_examples

_ROW = struct.Struct("<qq")  # one block index row: (start, end) as little-endian int64


def _read_all(path: Path, info: FileInfo) -> np.ndarray:
    """A whole (small) array of the cache, read into memory and checked: offsets and block indexes
    at start-up, without keeping a descriptor."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as e:
        raise unreadable(path, e) from None
    try:
        dtype = np.dtype(info.dtype)
        offset = check_npy(path, dtype, tuple(info.shape), fd)
        return _pread_array(fd, str(path), dtype, math.prod(info.shape), offset).reshape(info.shape)
    finally:
        os.close(fd)


def _pread_array(fd: int, path: str, dtype: np.dtype, count: int, offset: int) -> np.ndarray:
    out = np.empty(count, dtype=dtype)
    view, done = memoryview(out).cast("B"), 0
    while done < len(view):  # Linux returns at most 2 GiB a call: read on until done or the file ends
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise _short(path)
        done += n
    return out


def _short(path: str) -> FormatError:
    return FormatError(f"{path}: shorter than its manifest records (truncated after it was checked?); "
                       "rebuild the cache with --overwrite_cache")


class SplitReader:
    """Blocks and lines of one split, checked against its manifest when opened.

    Indexed by piece (common/format.py). Picklable: a DataLoader worker,
    forked or spawned, opens what it reads itself.
    """

    def __init__(self, split_dir: str | Path, manifest: Manifest | None = None):
        self.split_dir = Path(split_dir)
        self.manifest = manifest or load_manifest(self.split_dir)
        missing = [k for k, p in enumerate(self.manifest.pieces) if p.blocks is None]
        if missing:
            raise FormatError(f"{self.split_dir}: pieces without a block index: {missing[:3]}")
        counts = np.array([p.blocks.blocks for p in self.manifest.pieces], dtype=OFFSET_DTYPE)
        self.block_starts = np.concatenate([[0], np.cumsum(counts)]).astype(OFFSET_DTYPE)
        self._starts = self.block_starts.tolist()  # bisect on a list beats searchsorted on one scalar
        ids = self.manifest.tokenizer.special_ids
        self.bos, self.eos = ids.bos, ids.eos
        self.vocab_size = self.manifest.tokenizer.vocab_size
        root = str(self.split_dir) + os.sep
        # per piece: (tokens path, its FileInfo, token dtype, blocks path, its FileInfo)
        self._files = [(root + p.files["tokens"].path, p.files["tokens"], np.dtype(p.files["tokens"].dtype),
                        root + p.blocks.file.path, p.blocks.file) for p in self.manifest.pieces]
        self._checked: dict[str, int] = {}  # path -> data offset, for files checked (a forked worker inherits it)
        pool().close(root)  # a descriptor an earlier reader of this split left open may be of a file since replaced

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_checked": {}}  # a spawned process checks the files it opens itself

    def _fd(self, files: OpenFiles, path: str, info: FileInfo) -> tuple[int, int]:
        """(descriptor, data offset) of one of this split's files, checked the first time in this process."""
        try:
            fd = files.fd(path)
        except OSError as e:
            raise unreadable(path, e) from None
        offset = self._checked.get(path)
        if offset is None:
            offset = self._checked[path] = check_npy(Path(path), np.dtype(info.dtype), tuple(info.shape), fd)
        return fd, offset

    def close(self) -> None:
        """Close this split's descriptors in this process (before DataLoader workers fork: they open their own)."""
        pool().close(str(self.split_dir) + os.sep)

    @property
    def n_blocks(self) -> int:
        return int(self.block_starts[-1])

    def block(self, i: int) -> np.ndarray:
        """Block ``i`` of the split as int64 ids: ``[bos] + tokens[s:e] + [eos]``: its row of the block
        index, then its tokens, one pread each."""
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block {i} out of range 0..{self.n_blocks - 1}")
        piece = self.piece_of(i)
        files = pool()
        _, _, _, path, info = self._files[piece]
        fd, offset = self._fd(files, path, info)
        row = os.pread(fd, _ROW.size, offset + (i - self._starts[piece]) * _ROW.size)
        if len(row) != _ROW.size:
            raise _short(path)
        s, e = _ROW.unpack(row)
        return self._framed(files, piece, s, e)

    def framed(self, piece: int, s: int, e: int) -> np.ndarray:
        """``[bos] + tokens[s:e] + [eos]`` of one piece as int64 ids: one example as training sees it."""
        return self._framed(pool(), piece, s, e)

    def _framed(self, files: OpenFiles, piece: int, s: int, e: int) -> np.ndarray:
        path, info, dtype, _, _ = self._files[piece]
        fd, offset = self._fd(files, path, info)
        data = os.pread(fd, (e - s) * dtype.itemsize, offset + s * dtype.itemsize)
        if len(data) != (e - s) * dtype.itemsize:
            raise _short(path)
        ids = np.frombuffer(data, dtype)
        if e > s and int(ids.max()) >= self.vocab_size:  # one comparison an id (bench/dataloader.py: its cost)
            raise self._past_vocabulary(path, s, ids)
        out = np.empty(e - s + 2, dtype=np.int64)
        out[0], out[-1] = self.bos, self.eos
        out[1:-1] = ids
        return out

    def _past_vocabulary(self, path: str, s: int, ids: np.ndarray) -> FormatError:
        """An id no embedding row exists for: the file was altered after it was checked (its size is
        right, its content is not); never handed to the model, where it is an IndexError deep in torch."""
        k = int(np.argmax(ids >= self.vocab_size))
        return FormatError(f"{path}: token {s + k:,} is id {int(ids[k]):,}, at or past the vocabulary size "
                           f"{self.vocab_size:,} (the file was altered after it was built); every damaged file: "
                           f"mlm-inspect verify {os.path.abspath(self.split_dir)}")

    def tokens(self, piece: int) -> np.ndarray:
        """The whole token stream of one piece, read into memory (for tests and inspection)."""
        return _read_all(self.split_dir / self.manifest.pieces[piece].files["tokens"].path,
                         self.manifest.pieces[piece].files["tokens"])

    def offsets(self, piece: int) -> np.ndarray:
        """The line offsets of one piece (its lines array), read into memory."""
        info = self.manifest.pieces[piece].files["lines"]
        return _read_all(self.split_dir / info.path, info)

    def block_index(self, piece: int) -> np.ndarray:
        """The (n_blocks, 2) block index of one piece, read into memory."""
        info = self.manifest.pieces[piece].blocks.file
        return _read_all(self.split_dir / info.path, info)

    def block_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Every FULL-SENTENCES block as (start in its piece's tokens, length in ids with bos and eos),
        read from the block index files once (none is left open): 16 bytes a block in memory, so a
        block is then one read, and a piece one open file, not two."""
        spans = [self.block_index(k) for k in range(len(self._files))]
        if not spans:
            return np.empty(0, OFFSET_DTYPE), np.empty(0, OFFSET_DTYPE)
        rows = np.concatenate(spans)
        return np.ascontiguousarray(rows[:, 0]), rows[:, 1] - rows[:, 0] + 2

    def block_lengths(self) -> np.ndarray:
        """Every FULL-SENTENCES block's length in ids, bos and eos included, read from the block index."""
        return self.block_table()[1]

    def piece_of(self, block: int) -> int:
        """The piece holding block ``block`` of the split."""
        return bisect.bisect_right(self._starts, block) - 1

    def line_examples(self, max_seq_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LINE-BY-LINE examples of the split as (piece, start, end) arrays: example k is
        ``framed(piece[k], start[k], end[k])``. Computed from the line offsets by the packing
        rule (common/packing.py), 8 bytes x 3 per example, no per-line Python."""
        pieces, starts, ends = [], [], []
        for k in range(len(self.manifest.pieces)):
            s, e = line_examples(self.offsets(k), max_seq_length)
            pieces.append(np.full(len(s), k, dtype=np.int32))
            starts.append(s)
            ends.append(e)
        if not pieces:
            return np.empty(0, np.int32), np.empty(0, OFFSET_DTYPE), np.empty(0, OFFSET_DTYPE)
        return np.concatenate(pieces), np.concatenate(starts), np.concatenate(ends)

    def lines(self, piece: int) -> list[np.ndarray]:
        """Every line of one piece as ids without its separator (for tests and inspection)."""
        tokens, offsets = self.tokens(piece), self.offsets(piece)
        return [tokens[a : b - 1] for a, b in zip(offsets[:-1], offsets[1:])]
