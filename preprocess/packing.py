"""FULL-SENTENCES packing of a shard's lines into blocks of at most max_seq_length tokens.

Greedy, as the original builder: consecutive whole lines go into a block
while ``[bos] + lines joined by separators + [eos]`` fits. Unlike the
original, a line longer than a block is not dropped but cut into
block-sized pieces, each its own block, and counted in ``lines_split``.

One ``searchsorted`` per block over the line offsets (the stream already
holds the separators), so the Python loop runs once per block, not per line.
"""

from __future__ import annotations

import numpy as np

from common.format import OFFSET_DTYPE

PACKING = {"rule": "greedy-full-sentences", "long_lines": "split into pieces", "blocks_cross_shards": False}


def pack_blocks(line_offsets: np.ndarray, max_seq_length: int) -> tuple[np.ndarray, int]:
    """Blocks as (n_blocks, 2) int64 rows ``[start, end)`` into the stream, and lines split.

    ``line_offsets`` is the shard's lines array: line i spans
    ``[off[i], off[i+1] - 1)`` followed by its separator at ``off[i+1] - 1``.
    """
    cap = max_seq_length - 2  # room between bos and eos
    off = np.asarray(line_offsets, dtype=OFFSET_DTYPE)
    n = len(off) - 1
    rows: list[np.ndarray] = []
    starts, ends = [], []
    split = 0
    i = 0
    while i < n:
        # Lines i..j-1 fit iff their span without the last separator <= cap.
        j = int(np.searchsorted(off, off[i] + cap + 1, side="right")) - 1
        if j > i:
            starts.append(off[i])
            ends.append(off[j] - 1)
            i = j
            continue
        s, e = int(off[i]), int(off[i + 1]) - 1
        piece = np.arange(s, e, cap, dtype=OFFSET_DTYPE)
        if starts:
            rows.append(np.stack([np.array(starts, OFFSET_DTYPE), np.array(ends, OFFSET_DTYPE)], axis=1))
            starts, ends = [], []
        rows.append(np.stack([piece, np.minimum(piece + cap, e)], axis=1))
        split += 1
        i += 1
    if starts:
        rows.append(np.stack([np.array(starts, OFFSET_DTYPE), np.array(ends, OFFSET_DTYPE)], axis=1))
    blocks = np.concatenate(rows) if rows else np.empty((0, 2), OFFSET_DTYPE)
    return blocks, split
