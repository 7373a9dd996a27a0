"""Build one split's cache: reuse what matches, tokenize and pack what does not, commit.

Per shard, two content-addressed pieces, each with a JSON record that is
written last and marks the piece complete:

* tokens + lines, keyed by (shard digest, tokenizer digest, cleaning, format);
* blocks, keyed by (that key, max_seq_length, packing rule).

So a changed shard re-tokenizes only itself, a new ``--max_seq_length`` only
repacks, and a run killed midway resumes from the shards it finished. The
manifest is written after all pieces exist; unreferenced pieces are deleted
after it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from common.check import check_split
from common.errors import UserError
from common.format import (
    BLOCKS_DIR,
    FORMAT_VERSION,
    MANIFEST_NAME,
    OFFSET_DTYPE,
    SHARDS_DIR,
    TMP_MARK,
    FormatError,
    blocks_name,
    blocks_record_name,
    check_npy,
    length_histogram,
    lines_name,
    shard_record_name,
    tokens_name,
)
from common.hashing import file_digest, fingerprint
from common.manifest import (
    BlocksInfo,
    Manifest,
    Parameters,
    ShapeError,
    ShardInfo,
    TokenizerIdentity,
    build,
    read_json,
    write_json_atomic,
    write_manifest,
)
from common.packing import PACKING, pack_blocks
from preprocess.encode import CLEANING, TaskResult
from preprocess.sharding import Scan, Task, plan_tasks
from preprocess.writer import NpyStreamWriter, write_array

TaskMap = Callable[[Iterable[Task]], Iterator[TaskResult]]


@dataclass
class SplitPlan:
    """What a split needs, worked out from digests alone (no tokenizer loaded)."""

    split: str
    input_dir: Path
    out_dir: Path
    shards: list[Path]
    scans: list[Scan]
    keys: list[str]
    block_keys: list[str]
    records: list[dict[str, Any] | None]  # reusable tokenization records, None = tokenize
    blocks: list[dict[str, Any] | None]  # reusable block records, None = pack

    @property
    def to_tokenize(self) -> list[int]:
        return [i for i, r in enumerate(self.records) if r is None]

    @property
    def to_pack(self) -> list[int]:
        return [i for i, b in enumerate(self.blocks) if b is None]

    @property
    def bytes_to_tokenize(self) -> int:
        return sum(self.scans[i].size for i in self.to_tokenize)


@dataclass
class SplitReport:
    split: str
    shards: int
    tokenized: int
    repacked: int
    fresh: bool
    totals: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        t = self.totals
        state = "cache is fresh, nothing to do" if self.fresh else (
            f"{self.shards - self.tokenized} shards reused, {self.tokenized} tokenized, {self.repacked} repacked"
        )
        return (
            f"{self.split}: {state}; {t['shards']} shards, {t['lines']:,} lines, {t['tokens']:,} tokens, "
            f"{t['blocks']:,} blocks, {t['lines_split']:,} long lines split, {self.seconds:.1f} s"
        )


def shard_key(digest: str, tokenizer_digest: str) -> str:
    return fingerprint({"shard": digest, "tokenizer": tokenizer_digest, "cleaning": CLEANING, "format": FORMAT_VERSION})


def block_key(key: str, max_seq_length: int) -> str:
    return fingerprint({"tokens": key, "max_seq_length": max_seq_length, "packing": PACKING})


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _shard_record(record: Any, key: str, where: str) -> list[dict]:
    """The files of a tokens record (``shards/<K>.json``: a manifest shard entry without path and
    blocks) after checking its shape and that it names exactly this key's files."""
    if not isinstance(record, dict) or "path" in record or "blocks" in record:
        raise ShapeError(f"{where}: not a tokens record")
    info = build(ShardInfo, {**record, "path": "."}, where)
    if info.key != key or {k: f.path for k, f in info.files.items()} != {"tokens": tokens_name(key), "lines": lines_name(key)}:
        raise ShapeError(f"{where}: names other files than its key's")
    return [vars(f) for f in info.files.values()]


def _blocks_record(record: Any, key: str, where: str) -> list[dict]:
    info = build(BlocksInfo, record, where)
    if info.key != key or info.file.path != blocks_name(key):
        raise ShapeError(f"{where}: names other files than its key's")
    return [vars(info.file)]


def _valid_record(out_dir: Path, name: str, key: str, files_of: Callable[[Any, str, str], list[dict]],
                  verify: bool) -> dict | None:
    """The record ``name`` if it and every file it names are intact, else None (rebuild it).

    Intact means the right shape and size; with ``verify`` also the digest
    the record gives, which costs a read of every reused array.
    A record that exists but is not intact gets a warning: it is rebuilt.
    """
    path = out_dir / name
    if not path.is_file():
        return None
    try:
        record = read_json(path)
        for f in files_of(record, key, name):
            array = out_dir / f["path"]
            check_npy(array, np.dtype(f["dtype"]), tuple(f["shape"]))
            if verify and file_digest(array) != f["digest"]:
                raise FormatError(f"{f['path']}: content differs from its record's digest")
    except (FormatError, ShapeError, TypeError) as e:  # TypeError: a dtype string numpy does not know
        warn(f"{out_dir / name}: {e}; rebuilding that piece")
        return None
    return record


def plan_split(
    split: str, input_dir: Path, out_dir: Path, shards: list[Path], scans: list[Scan],
    tokenizer_digest: str, max_seq_length: int, overwrite: bool, verify: bool = False,
) -> SplitPlan:
    keys = [shard_key(s.digest, tokenizer_digest) for s in scans]
    bkeys = [block_key(k, max_seq_length) for k in keys]
    records: list[dict | None] = []
    blocks: list[dict | None] = []
    for key, bkey in zip(keys, bkeys):
        rec = None if overwrite else _valid_record(out_dir, shard_record_name(key), key, _shard_record, verify)
        blk = None if overwrite or rec is None else _valid_record(out_dir, blocks_record_name(bkey), bkey,
                                                                   _blocks_record, verify)
        records.append(rec)
        blocks.append(blk)
    return SplitPlan(split, input_dir, out_dir, shards, scans, keys, bkeys, records, blocks)


class _ShardAssembler:
    """Appends one shard's task results in order, then commits its arrays and record."""

    def __init__(self, plan: SplitPlan, index: int, dtype: np.dtype):
        self.plan, self.index = plan, index
        key = plan.keys[index]
        self.tokens = NpyStreamWriter(plan.out_dir / tokens_name(key), dtype)
        self.lines = NpyStreamWriter(plan.out_dir / lines_name(key), OFFSET_DTYPE)
        self.lines.append(np.zeros(1, OFFSET_DTYPE))
        self.n_tokens = 0
        self.hist = np.zeros(len(length_histogram(np.empty(0))), np.int64)
        self.invalid = self.without_tokens = 0

    def add(self, r: TaskResult) -> None:
        self.tokens.append(r.tokens)
        self.lines.append(self.n_tokens + np.cumsum(r.line_lengths))
        self.n_tokens += len(r.tokens)
        self.hist += length_histogram(r.line_lengths - 1)
        self.invalid += r.invalid_utf8
        self.without_tokens += r.lines_without_tokens

    def commit(self) -> dict[str, Any]:
        out = self.plan.out_dir
        files = {"tokens": self.tokens.commit(out), "lines": self.lines.commit(out)}
        scan = self.plan.scans[self.index]
        record = {
            "bytes": scan.size,  # what was hashed and tokenized, not what the file holds now
            "digest": scan.digest,
            "key": self.plan.keys[self.index],
            "lines": files["lines"].shape[0] - 1,
            "tokens": self.n_tokens,
            "invalid_utf8": self.invalid,
            "lines_without_tokens": self.without_tokens,
            "line_hist": [int(c) for c in self.hist],
            "files": {k: vars(v) for k, v in files.items()},
        }
        write_json_atomic(out / shard_record_name(self.plan.keys[self.index]), record)
        return record

    def abort(self) -> None:
        try:
            self.tokens.abort()
        finally:
            self.lines.abort()


def tokenize_split(plan: SplitPlan, dtype: np.dtype, task_map: TaskMap) -> None:
    """Tokenize every shard that has no reusable record, committing each as soon as it is whole."""
    todo = plan.to_tokenize
    if not todo:
        return
    tasks = plan_tasks([(i, plan.shards[i], plan.scans[i]) for i in todo])
    bar = tqdm(total=plan.bytes_to_tokenize, unit="B", unit_scale=True, unit_divisor=1024,
               desc=f"{plan.split}: tokenizing {len(todo)} shards", dynamic_ncols=True)
    start, n_tokens = time.perf_counter(), 0
    current: _ShardAssembler | None = None
    try:
        for r in task_map(tasks):
            if r.changed:
                raise UserError(
                    f"{plan.shards[r.shard]}: changed while this run read it (its bytes differ from those hashed "
                    "when the run started); nothing was stored for it. Rerun once nothing writes to it."
                )
            if current is None:
                current = _ShardAssembler(plan, r.shard, dtype)
            current.add(r)
            n_tokens += len(r.tokens)
            bar.update(r.nbytes)
            bar.set_postfix_str(f"{n_tokens / max(time.perf_counter() - start, 1e-9):,.0f} tok/s", refresh=False)
            if r.last:
                plan.records[r.shard] = current.commit()
                current = None
    finally:
        bar.close()
        if current is not None:
            current.abort()


def pack_split(plan: SplitPlan, max_seq_length: int) -> None:
    """Build the block index of every shard that has none for this max_seq_length."""
    for i in plan.to_pack:
        record = plan.records[i]
        assert record is not None, "pack_split runs after tokenize_split"
        offsets = np.load(plan.out_dir / record["files"]["lines"]["path"], mmap_mode="r")
        blocks, split = pack_blocks(offsets, max_seq_length)
        bkey = plan.block_keys[i]
        info = write_array(plan.out_dir / blocks_name(bkey), blocks, plan.out_dir)
        blk = {
            "key": bkey,
            "max_seq_length": max_seq_length,
            "blocks": len(blocks),
            "lines_split": split,
            "block_hist": length_histogram(blocks[:, 1] - blocks[:, 0] + 2),
            "file": vars(info),
        }
        write_json_atomic(plan.out_dir / blocks_record_name(bkey), blk)
        plan.blocks[i] = blk


def make_manifest(plan: SplitPlan, tokenizer: TokenizerIdentity, parameters: Parameters, command: list[str]) -> Manifest:
    from common import __version__

    shards = []
    for path, rec, blk in zip(plan.shards, plan.records, plan.blocks):
        assert rec is not None and blk is not None
        shards.append(ShardInfo.from_dict({**rec, "path": str(path.relative_to(plan.input_dir)), "blocks": blk}))
    return Manifest(
        input_dir=str(plan.input_dir),
        tokenizer=tokenizer,
        parameters=parameters,
        shards=shards,
        created_by={"command": command, "version": __version__,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )


def old_manifest(out_dir: Path) -> Manifest | None:
    """The split's current manifest; None if there is none or it is unreadable (with a warning:
    the run then rebuilds what it must, reusing every valid piece, and rewrites it)."""
    if not (out_dir / MANIFEST_NAME).exists():
        return None
    c = check_split(out_dir, sizes=False)  # each piece's arrays are checked as the plan reuses it
    if c.manifest is None:
        warn(f"{c.unreadable}; treating the split as unbuilt: valid pieces are reused and the manifest rewritten")
    return c.manifest


def commit_split(plan: SplitPlan, manifest: Manifest, old: Manifest | None, force: bool) -> bool:
    """Write the manifest if work was done (``force``) or it differs from ``old``; True if it was written."""
    if not force and old is not None and old.fingerprint() == manifest.fingerprint():
        return False
    write_manifest(plan.out_dir, manifest)
    return True


# The names this tool writes in a split dir (common/format.py), with the temp
# names of writer.py and write_json_atomic: the only files cleanup may delete.
_KEY = r"[0-9a-f]{32}"
_OURS = {
    SHARDS_DIR: re.compile(rf"\.?{_KEY}\.(tokens\.npy|lines\.npy|json)({re.escape(TMP_MARK)}\d+)?"),
    BLOCKS_DIR: re.compile(rf"\.?{_KEY}\.(blocks\.npy|json)({re.escape(TMP_MARK)}\d+)?"),
    ".": re.compile(rf"\.{re.escape(MANIFEST_NAME)}{re.escape(TMP_MARK)}\d+"),
}


def remove_unreferenced(out_dir: Path, manifest: Manifest) -> int:
    """Delete pieces the manifest does not name, and temp files of killed runs; how many went.

    Only files with this tool's own names, only in the split's own dirs, and
    never through a symlink: whatever else a user put there stays. Runs
    under the cache lock, so no other writer's temp file can be live.
    """
    keep: set[str] = set()
    for s in manifest.shards:
        keep |= {f.path for f in s.files.values()} | {shard_record_name(s.key)}
        if s.blocks:
            keep |= {s.blocks.file.path, blocks_record_name(s.blocks.key)}
    removed = 0
    if out_dir.is_symlink():
        return 0
    for sub, pattern in _OURS.items():
        d = out_dir / sub
        if d.is_symlink() or not d.is_dir():
            continue
        for p in d.iterdir():
            if pattern.fullmatch(p.name) and f"{sub}/{p.name}" not in keep and not p.is_symlink() and p.is_file():
                p.unlink()
                removed += 1
    return removed
