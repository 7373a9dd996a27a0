"""One piece job: its tasks' results -> one stream of tokens and lines -> record -> block index -> record.

The only code that writes a piece, whatever ran its tasks (a forked worker,
a Ray task on another node): ``run_piece``. Each part is committed by its
JSON record, written last (records.py reads them back), so a run stopped
anywhere leaves whole parts or temp files, and the bytes do not depend on
where or in what order the tasks ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.format import (
    OFFSET_DTYPE,
    blocks_name,
    blocks_record_name,
    length_histogram,
    lines_name,
    piece_record_name,
    tokens_name,
)
from common.json_files import write_json_atomic
from common.packing import pack_blocks
from preprocess.encode import UNK_EXAMPLES
from preprocess.formats import BAD_EXAMPLES
from preprocess.plan import PieceJob
from preprocess.spill import chunks_of, remove_spill
from preprocess.tasks import TaskResult
from preprocess.writer import NpyStreamWriter, write_array


@dataclass
class Examples:
    """The first few lines holding the unknown token, and records that held no text, for the warnings."""

    unk: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def add(self, unk: list[str], bad: list[str]) -> None:
        self.unk += unk[: UNK_EXAMPLES - len(self.unk)]
        self.bad += bad[: BAD_EXAMPLES - len(self.bad)]


@dataclass
class PieceDone:
    """What a piece job leaves: its two records (as written) and its examples."""

    key: str
    record: dict[str, Any]
    blocks: dict[str, Any]
    examples: Examples


def run_piece(job: PieceJob, results: Iterable[TaskResult], dtype: np.dtype, strict: bool) -> PieceDone:
    """Assemble the results of ``job.tasks()`` (in order) into the piece's arrays, commit them with their
    record, then pack and commit its block index. ``strict``: a record with no usable text stops the run
    (a UserError naming it), as does a shard that changed while it was read.

    Chunk files of the results are deleted once the piece is committed, not
    before: a Ray task retried after its node died must find them again.
    """
    assembler = PieceAssembler(job, dtype)
    examples = Examples()
    n, spilled = 0, []  # results whose arrays are in chunk files (no arrays kept: a piece can be GBs)
    try:
        for r in results:
            n += 1
            if r.spill is not None:
                spilled.append(r)
            for chunk in checked_chunks(r, job.paths[job.position(r.shard)], strict):
                assembler.add(chunk)
                examples.add(chunk.unk_examples, chunk.bad_examples)
        if n != job.n_tasks:  # one result a task, or the piece is wrong
            raise AssertionError(f"piece {job.key}: {n} results for its {job.n_tasks} tasks")
        record = assembler.commit()
    except BaseException:
        assembler.abort()
        raise
    for r in spilled:
        remove_spill(r)
    blocks = pack_piece(job.out_dir, record, job.block_key, job.max_seq_length)
    return PieceDone(job.key, record, blocks, examples)


class PieceAssembler:
    """Appends one piece's task results in order, shard after shard, then commits its arrays and record."""

    def __init__(self, job: PieceJob, dtype: np.dtype):
        self.job = job
        self.tokens = NpyStreamWriter(job.out_dir / tokens_name(job.key), dtype)
        self.lines = NpyStreamWriter(job.out_dir / lines_name(job.key), OFFSET_DTYPE)
        self.lines.append(np.zeros(1, OFFSET_DTYPE))
        self.n_tokens = self.n_lines = self.line_end = 0  # line_end: where the last closed line ends
        self.members: list[dict[str, Any]] = []
        self._shard = -1

    def add(self, r: TaskResult) -> None:
        if r.shard != self._shard:  # the first task of the next shard
            scan = self.job.scans[self.job.position(r.shard)]
            self._shard = r.shard
            self.members.append({"bytes": scan.size,  # what was hashed and tokenized, not what the file holds now
                                 "digest": scan.digest, "lines": 0, "tokens": 0, "invalid_utf8": 0,
                                 "lines_without_tokens": 0, "unk_tokens": 0, "bad_records": 0, "text_bytes": 0,
                                 "line_hist": np.zeros(len(length_histogram(np.empty(0))), np.int64)})
        m = self.members[-1]
        self.tokens.append(r.tokens)
        ends = self.n_tokens + np.cumsum(r.line_lengths)
        if r.open_end:  # its last line goes on in the next result, which closes it
            ends = ends[:-1]
        self.lines.append(ends)
        lengths = np.diff(ends, prepend=self.line_end) - 1  # a line that spans results counted whole, once
        self.line_end = int(ends[-1]) if len(ends) else self.line_end
        self.n_tokens += len(r.tokens)
        self.n_lines += len(ends)
        m["lines"] += len(ends)
        m["tokens"] += len(r.tokens)
        m["line_hist"] += length_histogram(lengths)
        m["invalid_utf8"] += r.invalid_utf8
        m["lines_without_tokens"] += r.lines_without_tokens
        m["unk_tokens"] += r.unk
        m["bad_records"] += r.bad_records
        m["text_bytes"] += r.text_bytes

    def commit(self) -> dict[str, Any]:
        out = self.job.out_dir
        files = {"tokens": self.tokens.commit(out), "lines": self.lines.commit(out)}
        key = self.job.key
        record = {
            "key": key,
            "shards": [{**m, "line_hist": [int(c) for c in m["line_hist"]]} for m in self.members],
            "lines": self.n_lines,
            "tokens": self.n_tokens,
            "files": {k: vars(v) for k, v in files.items()},
        }
        write_json_atomic(out / piece_record_name(key), record)
        return record

    def abort(self) -> None:
        try:
            self.tokens.abort()
        finally:
            self.lines.abort()


def checked_chunks(r: TaskResult, path: Path, strict: bool) -> Iterator[TaskResult]:
    """``chunks_of(r)``, or a UserError: the shard changed while it was read, or (``strict``) a chunk
    holds records without text."""
    if r.changed:
        remove_spill(r)
        raise UserError(f"{path}: changed while this run read it (its bytes differ from those hashed when the "
                        "run started); nothing was stored for it. Rerun once nothing writes to it.")
    for chunk in chunks_of(r):
        if strict and chunk.bad_records:
            raise UserError(f"{chunk.bad_examples[0]}; --strict refuses records without text "
                            "(drop --strict to count and skip them)")
        yield chunk


def pack_piece(out_dir: Path, record: dict[str, Any], bkey: str, max_seq_length: int) -> dict[str, Any]:
    """Pack one tokenized piece into blocks and commit the block index with its record."""
    offsets = np.load(out_dir / record["files"]["lines"]["path"], mmap_mode="r")
    blocks, split = pack_blocks(offsets, max_seq_length)
    info = write_array(out_dir / blocks_name(bkey), blocks, out_dir)
    blk = {
        "key": bkey,
        "max_seq_length": max_seq_length,
        "blocks": len(blocks),
        "lines_split": split,
        "block_hist": length_histogram(blocks[:, 1] - blocks[:, 0] + 2),
        "file": vars(info),
    }
    write_json_atomic(out_dir / blocks_record_name(bkey), blk)
    return blk
