"""One task: its text read (readers.py), encoded batch by batch with the worker's encoder (encoder.py).

The unit every executor runs, in a forked worker or a Ray task: it reads
only its own bytes, and returns its tokens as one stream with a separator
after each line, and each line's length.
"""

from __future__ import annotations

import itertools

import numpy as np

from common.format import OFFSET_DTYPE
from preprocess.encoder import STATE, encode_bounded
from preprocess.readers import Batch, read_task
from preprocess.spill import Chunks
from preprocess.tasks import Task, TaskResult, empty_result

BATCH_LINES = 1024
UNK_EXAMPLES = 3


def encode_task(task: Task) -> TaskResult:
    """Read one task's text and encode it, chunk by chunk (spill.py) where it comes in several.

    Nothing is kept of bytes that are not those the run planned with
    (``formats.read_task``): the result then says ``changed``.
    """
    chunks = Chunks(task, STATE["dtype"])
    try:
        read = read_task(task, STATE["space_token"], lambda batch: chunks.add(encode_batch(task, batch)))
        if read.changed:
            chunks.discard()
            return empty_result(task, STATE["dtype"], read.nbytes, changed=True)
        return chunks.result(read.nbytes)
    except BaseException:
        chunks.discard()
        raise


def encode_batch(task: Task, batch: Batch) -> TaskResult:
    """Encode a batch of cleaned lines, BATCH_LINES at a time, into one result; the first line closes an
    open one (``batch.starts_open``), the last stays open (``batch.ends_open``)."""
    lines, starts_open, ends_open = batch.lines, batch.starts_open, batch.ends_open
    encode, sep, dtype = STATE["encode"], STATE["separator"], STATE["dtype"]
    cut_before = (" ", "\t", *([STATE["space_token"]] if STATE["space_token"] else []))
    streams, lengths, dropped, unk, examples = [], [], 0, 0, []
    for i in range(0, len(lines), BATCH_LINES):
        ids = encode_bounded(encode, lines[i : i + BATCH_LINES], cut_before)
        if STATE["unk"] is not None:
            for line, x in zip(lines[i : i + BATCH_LINES], ids):
                k = x.count(STATE["unk"]) if isinstance(x, list) else list(x).count(STATE["unk"])
                unk += k
                if k and len(examples) < UNK_EXAMPLES:
                    examples.append(line[:100])
        s, n, d = ids_to_stream(ids, sep, dtype, keep_first=i == 0 and starts_open,
                                open_last=i + BATCH_LINES >= len(lines) and ends_open)
        streams.append(s)
        lengths.append(n)
        dropped += d
    tokens = np.concatenate(streams) if streams else np.empty(0, dtype)
    line_lengths = np.concatenate(lengths) if lengths else np.empty(0, OFFSET_DTYPE)
    return TaskResult(task.shard, task.last, 0, tokens, line_lengths, dropped, batch.invalid, unk=unk,
                      unk_examples=examples, open_end=ends_open, bad_records=batch.bad,
                      bad_examples=batch.bad_examples, text_bytes=batch.text_bytes)


def ids_to_stream(ids: list[list[int]], separator: int, dtype: np.dtype, keep_first: bool = False,
                  open_last: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(token stream with a separator after each line, per-line lengths incl. separator, lines dropped).

    Lines that encode to no ids are dropped (they would be a bare separator),
    except a first line that closes an open one (``keep_first``) and a last
    line left open (``open_last``: no separator, its length without one).
    """
    n = len(ids)
    keep = [len(x) > 0 or (i == 0 and keep_first) or (i == n - 1 and open_last) for i, x in enumerate(ids)]
    kept = [x for x, k in zip(ids, keep) if k]
    lens = np.fromiter((len(x) for x in kept), dtype=OFFSET_DTYPE, count=len(kept))
    flat = np.fromiter(itertools.chain.from_iterable(kept), dtype=dtype, count=int(lens.sum()))
    ends = np.cumsum(lens)
    closed = len(kept) - 1 if open_last and kept else len(kept)
    stream = np.insert(flat, ends[:closed], np.array(separator, dtype=dtype))
    lengths = lens + 1
    if closed < len(kept):
        lengths[-1] -= 1
    return stream, lengths, n - len(kept)
