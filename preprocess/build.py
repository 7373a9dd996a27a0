"""Build one split's cache: reuse what matches, tokenize and pack what does not, commit.

Shards are grouped into pieces (preprocess/sharding.py: ``group_shards``).
Per piece, two content-addressed parts, each with a JSON record that is
written last and marks the part complete:

* tokens + lines, keyed by (its shards' digests, tokenizer digest, cleaning, format);
* blocks, keyed by (that key, max_seq_length, packing rule).

So a changed shard re-tokenizes only its piece, a new ``--max_seq_length``
only repacks, and a run killed midway resumes from the pieces it finished.
The manifest is written after all parts exist; unreferenced files are
deleted after it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from common.check import check_split
from common.errors import UserError
from common.format import (
    BLOCKS_DIR,
    FORMAT_VERSION,
    LEGACY_DIRS,
    MANIFEST_NAME,
    OFFSET_DTYPE,
    PIECES_DIR,
    TMP_MARK,
    FormatError,
    blocks_name,
    blocks_record_name,
    check_npy,
    length_histogram,
    lines_name,
    piece_record_name,
    temp_is_stale,
    tokens_name,
    writer_id,
)
from common.hashing import file_digest, fingerprint
from common.manifest import (
    BlocksInfo,
    Manifest,
    Parameters,
    PieceInfo,
    ShapeError,
    ShardInfo,
    TokenizerIdentity,
    build,
    read_json,
    write_json_atomic,
    write_manifest,
)
from common.packing import PACKING, pack_blocks
from preprocess.encode import CLEANING, SPILL_PREFIX, UNK_EXAMPLES, TaskResult, chunks_of, remove_spill
from preprocess.formats import BAD_EXAMPLES, Format, read_key
from preprocess.sharding import Scan, Task, group_shards, plan_tasks
from preprocess.writer import NpyStreamWriter, write_array

TaskMap = Callable[[Iterable[Task]], Iterator[TaskResult]]


@dataclass
class SplitPlan:
    """What a split needs, worked out from digests alone (no tokenizer loaded); lists by piece."""

    split: str
    input_dir: str  # the text dir, or dirs separated by commas
    out_dir: Path
    names: list[str]  # of the shards, as the manifest lists them (common/check.py: list_inputs)
    shards: list[Path]
    fmts: list[Format]  # each shard's format (formats.py: shard_format): a split may mix them
    scans: list[Scan]
    groups: list[list[int]]  # the shard indices of each piece, consecutive
    keys: list[str]
    block_keys: list[str]
    records: list[dict[str, Any] | None]  # reusable tokenization records, None = tokenize
    blocks: list[dict[str, Any] | None]  # reusable block records, None = pack
    reading: dict[str, Any] = field(default_factory=dict)  # Task fields of every task: column, sizes

    @property
    def to_tokenize(self) -> list[int]:
        return [i for i, r in enumerate(self.records) if r is None]

    @property
    def to_pack(self) -> list[int]:
        return [i for i, b in enumerate(self.blocks) if b is None]

    def shards_of(self, pieces: list[int]) -> int:
        return sum(len(self.groups[i]) for i in pieces)

    @property
    def bytes_to_tokenize(self) -> int:
        return sum(self.scans[j].size for i in self.to_tokenize for j in self.groups[i])


@dataclass
class SplitReport:
    split: str
    shards: int
    tokenized: int  # shards, counted by the pieces that hold them
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
            f"{self.split}: {state}; {t['shards']} shards in {t['pieces']} pieces, {t['lines']:,} lines, "
            f"{t['tokens']:,} tokens, {t['blocks']:,} blocks, {t['lines_split']:,} long lines split, "
            f"{self.seconds:.1f} s"
        )


def piece_key(scans: list[Scan], tokenizer_digest: str, read: dict[str, Any] | None = None) -> str:
    """The key of a piece of these shards. Where a giant line was cut (sharding.py), the cut
    positions count too: they depend on --task_size_mb, and ids at a cut may differ. ``read``: how
    the shards are read (``piece_read``), when not as plain text."""
    cuts = [list(s.open_ends) for s in scans]
    return fingerprint({"shards": [s.digest for s in scans], "tokenizer": tokenizer_digest, "cleaning": CLEANING,
                        "format": FORMAT_VERSION, **({"cuts": cuts} if any(cuts) else {}),
                        **({"read": read} if read else {})})


def piece_read(fmts: list[Format], column: str, task_bytes: int) -> dict[str, Any] | None:
    """How a piece's shards are read, for its key: ``formats.read_key`` of their format where they share
    one (so a piece of one format has the key it has in a split of that format alone), else each
    shard's, in order (a split of several formats, ``--ext txt,parquet``)."""
    reads = [read_key(f, column, task_bytes) for f in fmts]
    return reads[0] if all(r == reads[0] for r in reads) else {"shards": reads}


def block_key(key: str, max_seq_length: int) -> str:
    return fingerprint({"tokens": key, "max_seq_length": max_seq_length, "packing": PACKING})


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _piece_record(digests: list[str]) -> Callable[[Any, str, str], list[dict]]:
    """A checker of a tokens record (``pieces/<K>.json``) for a piece of shards with ``digests``:
    its shape, that it names exactly its key's files, and that it describes those shards."""

    def files_of(record: Any, key: str, where: str) -> list[dict]:
        if not isinstance(record, dict) or not isinstance(record.get("shards"), list):
            raise ShapeError(f"{where}: not a tokens record")
        members = [build(ShardInfo, {**m, "path": "."} if isinstance(m, dict) else m, f"{where}.shards[{i}]")
                   for i, m in enumerate(record["shards"])]
        if [m.digest for m in members] != digests:
            raise ShapeError(f"{where}: describes other shards than its key's")
        info = build(PieceInfo, {**record, "shards": len(members)}, where)
        info.check_members(members, where)
        if info.key != key or {k: f.path for k, f in info.files.items()} != {"tokens": tokens_name(key),
                                                                           "lines": lines_name(key)}:
            raise ShapeError(f"{where}: names other files than its key's")
        return [vars(f) for f in info.files.values()]

    return files_of


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


def piece_groups(names: list[str], sizes: list[int], piece_bytes: int) -> list[list[int]]:
    """The shard indices of each piece (sharding.group_shards), consecutive."""
    groups, first = [], 0
    for n in group_shards(names, sizes, piece_bytes):
        groups.append(list(range(first, first + n)))
        first += n
    return groups


def plan_split(
    split: str, input_dir: str, out_dir: Path, names: list[str], shards: list[Path], fmts: list[Format],
    scans: list[Scan | None], tokenizer_digest: str, max_seq_length: int, overwrite: bool, verify: bool = False,
    piece_bytes: int = 4 << 20, column: str = "text",
    select: tuple[float, int, bool] | None = None, groups: list[list[int]] | None = None,
    fresh: frozenset[str] = frozenset(),
) -> SplitPlan:
    """What the split needs; ``fmts``: each shard's format. ``groups``: plan only these pieces (a slice's
    share; ``scans`` then needs only their shards), else every piece, grouped from the scans' sizes.
    ``fresh``: keys of pieces built by this build's slices, reused even with ``overwrite`` (the slices
    overwrote them)."""
    if groups is None:
        groups = piece_groups(names, [s.size for s in scans], piece_bytes)
    digests = [[scans[i].digest for i in g] for g in groups]
    reads = [piece_read([fmts[i] for i in g], column, piece_bytes) for g in groups]
    if select is not None:  # which documents this side of a held-out split takes
        reads = [{**(read or {}), "select": list(select)} for read in reads]
    keys = [piece_key([scans[i] for i in g], tokenizer_digest, read) for g, read in zip(groups, reads)]
    bkeys = [block_key(k, max_seq_length) for k in keys]
    records: list[dict | None] = []
    blocks: list[dict | None] = []
    for key, bkey, d in zip(keys, bkeys, digests):
        stale = overwrite and key not in fresh
        rec = None if stale else _valid_record(out_dir, piece_record_name(key), key, _piece_record(d), verify)
        blk = None if stale or rec is None else _valid_record(out_dir, blocks_record_name(bkey), bkey,
                                                                   _blocks_record, verify)
        records.append(rec)
        blocks.append(blk)
    reading = {"column": column, "task_bytes": piece_bytes, "spill_dir": str(out_dir / PIECES_DIR), "select": select}
    return SplitPlan(split, input_dir, out_dir, names, shards, fmts, scans, groups, keys, bkeys, records, blocks,
                     reading)


class _PieceAssembler:
    """Appends one piece's task results in order, shard after shard, then commits its arrays and record."""

    def __init__(self, plan: SplitPlan, piece: int, dtype: np.dtype):
        self.plan, self.piece = plan, piece
        key = plan.keys[piece]
        self.tokens = NpyStreamWriter(plan.out_dir / tokens_name(key), dtype)
        self.lines = NpyStreamWriter(plan.out_dir / lines_name(key), OFFSET_DTYPE)
        self.lines.append(np.zeros(1, OFFSET_DTYPE))
        self.n_tokens = self.n_lines = self.line_end = 0  # line_end: where the last closed line ends
        self.members: list[dict[str, Any]] = []
        self._shard = -1

    def add(self, r: TaskResult) -> None:
        if r.shard != self._shard:  # the first task of the next shard
            scan = self.plan.scans[r.shard]
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
        out = self.plan.out_dir
        files = {"tokens": self.tokens.commit(out), "lines": self.lines.commit(out)}
        key = self.plan.keys[self.piece]
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


@dataclass
class Examples:
    """The first few lines holding the unknown token, and records that held no text, for the warnings."""

    unk: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def add(self, r: TaskResult) -> None:
        self.unk += r.unk_examples[: UNK_EXAMPLES - len(self.unk)]
        self.bad += r.bad_examples[: BAD_EXAMPLES - len(self.bad)]


def checked_chunks(r: TaskResult, path: Path, strict: bool, keep: bool = False) -> Iterator[TaskResult]:
    """``chunks_of(r)``, or a UserError: the shard changed while it was read, or (``strict``) a chunk
    holds records without text."""
    if r.changed:
        remove_spill(r)
        raise UserError(f"{path}: changed while this run read it (its bytes differ from those hashed when the "
                        "run started); nothing was stored for it. Rerun once nothing writes to it.")
    for chunk in chunks_of(r, keep):
        if strict and chunk.bad_records:
            raise UserError(f"{chunk.bad_examples[0]}; --strict refuses records without text "
                            "(drop --strict to count and skip them)")
        yield chunk


def tokenize_split(plan: SplitPlan, dtype: np.dtype, task_map: TaskMap, strict: bool = False) -> Examples:
    """Tokenize every piece that has no reusable record, committing each as soon as it is whole.

    ``strict``: a record with no usable text stops the run (a UserError naming it). Returns
    examples for the warnings.
    """
    todo = plan.to_tokenize
    examples = Examples()
    if not todo:
        return examples
    piece_of = {i: p for p in todo for i in plan.groups[p]}
    tasks = plan_tasks([(i, plan.shards[i], plan.scans[i], plan.fmts[i]) for p in todo for i in plan.groups[p]],
                       **plan.reading)
    bar = tqdm(total=plan.bytes_to_tokenize, unit="B", unit_scale=True, unit_divisor=1024,
               desc=f"{plan.split}: tokenizing {plan.shards_of(todo)} shards", dynamic_ncols=True)
    start, n_tokens = time.perf_counter(), 0
    current: _PieceAssembler | None = None
    try:
        for r in task_map(tasks):
            piece = piece_of[r.shard]
            if current is None:
                current = _PieceAssembler(plan, piece, dtype)
            for chunk in checked_chunks(r, plan.shards[r.shard], strict):
                current.add(chunk)
                examples.add(chunk)
                n_tokens += len(chunk.tokens)
            bar.update(r.nbytes)
            bar.set_postfix_str(f"{n_tokens / max(time.perf_counter() - start, 1e-9):,.0f} tok/s", refresh=False)
            if r.last and r.shard == plan.groups[piece][-1]:
                plan.records[piece] = current.commit()
                current = None
    finally:
        bar.close()
        if current is not None:
            current.abort()
    return examples


def pack_split(plan: SplitPlan, max_seq_length: int) -> None:
    """Build the block index of every piece that has none for this max_seq_length."""
    for i in plan.to_pack:
        record = plan.records[i]
        assert record is not None, "pack_split runs after tokenize_split"
        plan.blocks[i] = pack_piece(plan.out_dir, record, plan.block_keys[i], max_seq_length)


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


def make_manifest(plan: SplitPlan, tokenizer: TokenizerIdentity, parameters: Parameters, command: list[str]) -> Manifest:
    from common import __version__

    shards, pieces = [], []
    for group, rec, blk in zip(plan.groups, plan.records, plan.blocks):
        assert rec is not None and blk is not None
        for i, member in zip(group, rec["shards"]):  # checked when the record was read or written by this run
            shards.append(ShardInfo(path=plan.names[i], **member, mtime_ns=plan.scans[i].mtime_ns))
        pieces.append(PieceInfo.from_dict({**rec, "shards": len(group), "blocks": blk}))
    return Manifest(
        input_dir=plan.input_dir,
        tokenizer=tokenizer,
        parameters=parameters,
        shards=shards,
        pieces=pieces,
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


def same_content(a: Manifest, b: Manifest) -> bool:
    """Whether two manifests record the same dataset: every field but who wrote them and when (what
    ``fingerprint`` hashes), compared as dataclasses, not serialised twice (15 s at 36,000 pieces)."""
    return all(getattr(a, f.name) == getattr(b, f.name) for f in fields(Manifest) if f.name != "created_by")


def commit_split(plan: SplitPlan, manifest: Manifest, old: Manifest | None, force: bool) -> bool:
    """Write the manifest if work was done (``force``) or it differs from ``old``; True if it was written."""
    if not force and old is not None and same_content(old, manifest):
        return False
    write_manifest(plan.out_dir, manifest)
    return True


# The names this tool writes in a split dir (common/format.py), with the temp
# names of writer.py and write_json_atomic and the chunk files of encode.py:
# the only files cleanup may delete.
_KEY = r"[0-9a-f]{32}"
_WRITER = r"(?P<writer>[A-Za-z0-9_-]+\.\d+)"  # <host>.<pid>: common.format.writer_id
_TEMP = rf"{re.escape(TMP_MARK)}(?:{_WRITER}\.[0-9a-f]+|(?P<pid>\d+))"  # (<pid> alone: written by version 0.1)
_NAMES = {
    PIECES_DIR: rf"\.?{_KEY}\.(tokens\.npy|lines\.npy|json)",
    **{d: rf"\.?{_KEY}\.(tokens\.npy|lines\.npy|json)" for d in LEGACY_DIRS},  # format 1's, replaced by pieces
    BLOCKS_DIR: rf"\.?{_KEY}\.(blocks\.npy|json)",
    ".": rf"\.{re.escape(MANIFEST_NAME)}",
}
_FINAL = {sub: re.compile(name) for sub, name in _NAMES.items() if sub != "."}
_TEMPS = {sub: re.compile(name + _TEMP) for sub, name in _NAMES.items()}
_SPILL = re.compile(rf"{re.escape(SPILL_PREFIX)}{_WRITER}-\d+\.(tokens|lengths)")


def _writer(m: re.Match) -> str:
    return m.group("writer") or f"{writer_id().rpartition('.')[0]}.{m.group('pid')}"


def _safe_files(d: Path) -> list[Path]:
    """The regular files of ``d``, never through a symlink: whatever a link points at is not ours."""
    if d.is_symlink() or not d.is_dir():
        return []
    with os.scandir(d) as entries:  # the type from the listing itself: no stat per file (142,000 in a big split)
        return [Path(e.path) for e in entries if e.is_file(follow_symlinks=False)]


def remove_spills(out_dir: Path) -> None:
    """Delete the chunk files of tasks read in chunks (encode.py) that this run or a dead writer
    left; another live writer's (a slice on another node) are not touched."""
    now = time.time()
    for p in _safe_files(out_dir / PIECES_DIR):
        m = _SPILL.fullmatch(p.name)
        if m and (_writer(m).rpartition(".")[2] == str(os.getpid()) or temp_is_stale(p, _writer(m), now)):
            p.unlink(missing_ok=True)


def remove_stale_temps(out_dir: Path) -> int:
    """Delete temp and chunk files whose writer is gone (common/format.py: ``temp_is_stale``); how many."""
    now, removed = time.time(), 0
    for sub, pattern in _TEMPS.items():
        for p in _safe_files(out_dir / sub):
            m = pattern.fullmatch(p.name) or (_SPILL.fullmatch(p.name) if sub == PIECES_DIR else None)
            if m and temp_is_stale(p, _writer(m), now):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def remove_unreferenced(out_dir: Path, manifest: Manifest, leased: set[str] = frozenset()) -> int:
    """Delete pieces the manifest does not name, and temp files of dead writers; how many went.
    ``leased``: files a running training job reads (common/leases.py), kept too.

    Only files with this tool's own names, only in the split's own dirs, and
    never through a symlink: whatever else a user put there stays. Runs
    under the cache's exclusive lock, so no slice of this cache is running;
    a temp file is still deleted only once its writer is gone, in case the
    lock does not hold across hosts (see README: shared file systems).
    """
    keep: set[str] = set(leased)
    for p in manifest.pieces:
        keep |= {f.path for f in p.arrays()} | {piece_record_name(p.key)}
        if p.blocks:
            keep.add(blocks_record_name(p.blocks.key))
    if out_dir.is_symlink():
        return 0
    removed = remove_stale_temps(out_dir)
    for sub, pattern in _FINAL.items():
        d = out_dir / sub
        for p in _safe_files(d):
            if pattern.fullmatch(p.name) and f"{sub}/{p.name}" not in keep:
                p.unlink()
                removed += 1
        if sub in LEGACY_DIRS and d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()  # a format-1 cache's dir, now empty
    return removed
