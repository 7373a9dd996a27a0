"""The two packing rules, from a piece's line offsets to examples of at most max_seq_length tokens.

* FULL-SENTENCES (``pack_blocks``, stored by the preprocess stage as the
  block index): greedy, as the original builder: consecutive whole lines go
  into a block while ``[bos] + lines joined by separators + [eos]`` fits.
* LINE-BY-LINE (``line_examples``, computed by the reader when a dataset
  asks for it): one line per example.

In both, a line longer than a block is not dropped (the original builder
dropped 320k lines of Thai Wikipedia) but cut into block-sized pieces by
``pieces``, the one place that rule is written.

One ``searchsorted`` per block over the line offsets (the stream already
holds the separators), so the Python loop runs once per block, not per line.
"""

from __future__ import annotations

import numpy as np

from common.format import OFFSET_DTYPE

PACKING = {"rule": "greedy-full-sentences", "long_lines": "split into pieces", "blocks_cross": "files of a piece"}


def pieces(starts: np.ndarray, ends: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Each span ``[starts[i], ends[i])`` cut into consecutive pieces of at most ``cap`` ids, in order.

    A span of ``n`` ids gives ``max(1, ceil(n / cap))`` pieces; all but the
    last are ``cap`` long.
    """
    starts, ends = np.asarray(starts, OFFSET_DTYPE), np.asarray(ends, OFFSET_DTYPE)
    count = np.maximum(1, -(-(ends - starts) // cap))
    first = np.repeat(np.cumsum(count) - count, count)  # index of each piece's first sibling
    piece_starts = np.repeat(starts, count) + cap * (np.arange(int(count.sum()), dtype=OFFSET_DTYPE) - first)
    return piece_starts, np.minimum(piece_starts + cap, np.repeat(ends, count))


def line_examples(line_offsets: np.ndarray, max_seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """LINE-BY-LINE examples as ``[start, end)`` into the stream: every line (its separator
    dropped), a line longer than a block in pieces."""
    off = np.asarray(line_offsets, dtype=OFFSET_DTYPE)
    return pieces(off[:-1], off[1:] - 1, max_seq_length - 2)


def pack_blocks(line_offsets: np.ndarray, max_seq_length: int) -> tuple[np.ndarray, int]:
    """Blocks as (n_blocks, 2) int64 rows ``[start, end)`` into the stream, and lines split.

    ``line_offsets`` is the piece's lines array: line i spans
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
        if starts:
            rows.append(np.stack([np.array(starts, OFFSET_DTYPE), np.array(ends, OFFSET_DTYPE)], axis=1))
            starts, ends = [], []
        rows.append(np.stack(pieces(off[i : i + 1], off[i + 1 : i + 2] - 1, cap), axis=1))
        split += 1
        i += 1
    if starts:
        rows.append(np.stack([np.array(starts, OFFSET_DTYPE), np.array(ends, OFFSET_DTYPE)], axis=1))
    blocks = np.concatenate(rows) if rows else np.empty((0, 2), OFFSET_DTYPE)
    return blocks, split
