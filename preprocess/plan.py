"""The plan: from the text dirs and the cache, every piece job of this run, worked out once.

list the shards (inputs.py) -> group them into pieces by names and sizes
(``group_shards``) -> a slice keeps its own pieces (``assign``) -> scan
their shards (scan.py: digests and task ranges) -> each piece's keys ->
which parts the cache already holds (records.py).

Each piece job carries everything its work needs, typed: its shards with
their resolved formats and scans, its keys, its tasks, and the records it
can reuse. Executors (executors.py, ray_executor.py) only decide where the
jobs run; piece.py says what running one is.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash
from tqdm import tqdm

from common.check import input_dirs
from common.format import FORMAT_VERSION, MANIFEST_NAME, PIECES_DIR, blocks_record_name, piece_record_name
from common.hashing import fingerprint
from common.manifest import Manifest, PieceInfo, ShardInfo
from common.packing import PACKING
from preprocess import records
from preprocess.cleaning import CLEANING
from preprocess.config import PreprocessConfig
from preprocess.formats import Format, read_key
from preprocess.inputs import list_shards
from preprocess.scan import Scan, scan_shards
from preprocess.tasks import Reading, Task, tasks_of

FLAGS = {"train": "--train_dir", "validation": "--eval_dir"}
Listed = tuple[PieceInfo, list[ShardInfo]]  # a piece of a manifest, and its shards


@dataclass
class PieceJob:
    """One piece: consecutive shards tokenized as one stream, and what of it the cache already holds."""

    split: str
    out_dir: Path  # the split's dir, absolute: a Ray worker's working dir is not the driver's
    key: str
    block_key: str
    max_seq_length: int
    shards: list[int]  # indices into the split's shard list
    paths: list[Path]  # of those shards, absolute
    fmts: list[Format]
    scans: list[Scan]
    reading: Reading
    record: dict[str, Any] | None = None  # the tokens record, read or written by this run
    blocks: dict[str, Any] | None = None  # the blocks record, read or written by this run
    listed: Listed | None = None  # the piece as the split's manifest lists it, still intact: no record read

    @property
    def needs_tokens(self) -> bool:
        return self.record is None and self.listed is None

    @property
    def needs_blocks(self) -> bool:
        return self.blocks is None and self.listed is None

    def tasks(self) -> list[Task]:
        """Its shards' ranges, in order: what the workers tokenize."""
        return [t for i, path, scan, fmt in zip(self.shards, self.paths, self.scans, self.fmts)
                for t in tasks_of(i, path, scan, fmt, self.reading)]

    def position(self, shard: int) -> int:
        """Where shard ``shard`` of the split is in this piece (its shards are consecutive)."""
        return shard - self.shards[0]

    @property
    def n_tasks(self) -> int:
        return sum(len(s.ranges) for s in self.scans)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.scans)


@dataclass
class SplitPlan:
    """A split's shards and the piece jobs of this run: all of them, or a slice's share."""

    split: str
    input_dir: str  # the text dir, or dirs separated by commas, absolute
    out_dir: Path
    names: list[str]  # of the shards, as the manifest lists them (common/check.py: list_inputs)
    paths: list[Path]
    fmts: list[Format]  # each shard's format: a split may mix them
    sizes: list[int]  # bytes of each shard when listed: what pieces are grouped and slices assigned by
    groups: list[list[int]]  # the shard indices of every piece, consecutive (a slice's plan too)
    scans: list[Scan | None]  # None: a shard of another slice's piece, not read
    pieces: list[PieceJob]

    @property
    def to_tokenize(self) -> list[PieceJob]:
        return [p for p in self.pieces if p.needs_tokens]

    @property
    def to_pack(self) -> list[PieceJob]:
        return [p for p in self.pieces if p.needs_blocks]

    @staticmethod
    def shards_of(jobs: list[PieceJob]) -> int:
        return sum(len(p.shards) for p in jobs)


Listing = list[tuple[str, Path, Format]]  # (name, path, format) of each shard of a text dir, sorted


def list_splits(cfg: PreprocessConfig) -> dict[str, Listing]:
    """Each text dir's shards, listed and checked (inputs.py) before the cache is locked or anything read:
    a wrong --train_dir is one line whatever else is wrong. A held-out split reads the training dir:
    listed once."""
    out: dict[str, Listing] = {}
    for split, d in cfg.splits():
        if d not in out:
            out[d] = list_shards(d, cfg.formats, FLAGS[split], cfg.recursive, cfg.text_column, has_recursive=True)
    return out


def plan_splits(cfg: PreprocessConfig, listings: dict[str, Listing], cache: Path, tokenizer_digest: str,
                sliced: tuple[int, int] | None, fresh: list[frozenset[str]],
                olds: list[Manifest | None]) -> list[SplitPlan]:
    """Every split's plan, train first. ``sliced``: (K, N), plan only slice K's pieces. ``fresh``, by
    split: keys of pieces this build's slices wrote, reused even with --overwrite_cache (they did it).
    ``olds``, by split: its manifest, if readable; a piece it lists intact is reused without its records."""
    scanned: dict[str, list[Scan | None]] = {}
    plans = []
    for (split, d), built, old in zip(cfg.splits(), fresh, olds):
        names = [name for name, _, _ in listings[d]]
        real = [os.path.realpath(x) for x in input_dirs(d)]
        input_dir = ",".join(real)
        paths = resolved(real, names)
        fmts = [fmt for _, _, fmt in listings[d]]
        sizes = [p.stat().st_size for p in paths]
        groups = piece_groups(names, sizes, cfg.task_bytes)
        mine = list(range(len(groups)))
        if sliced is not None:
            k, n = sliced
            owner = assign([sum(sizes[i] for i in g) for g in groups], n)
            mine = [g for g in mine if owner[g] == k]
        scans = scanned.setdefault(input_dir, [None] * len(paths))  # both sides of a held-out split: hashed once
        need = [i for g in mine for i in groups[g] if scans[i] is None]
        for i, scan in zip(need, _scan(split, [paths[i] for i in need], [fmts[i] for i in need],
                                       sum(sizes[i] for i in need), cfg)):
            scans[i] = scan
        out_dir = cache / split
        where = out_dir.resolve()  # a Ray worker's working dir is not ours: what jobs carry is absolute
        reading = Reading(cfg.text_column, cfg.task_bytes, cfg.select(split), str(where / PIECES_DIR))
        reuse = Reuse(out_dir, built, _listed(old, out_dir), cfg.overwrite_cache, cfg.verify_outputs)
        pieces = [_piece(split, where, groups[g], paths, fmts, scans, reading, tokenizer_digest, cfg.max_seq_length,
                         reuse) for g in mine]
        plans.append(SplitPlan(split, input_dir, out_dir, names, paths, fmts, sizes, groups, scans, pieces))
    return plans


def resolved(real: list[str], names: list[str]) -> list[Path]:
    """The shards ``names`` (common/check.py: ``list_inputs``) under their dirs ``real``, resolved once
    (links followed): absolute paths a worker on any node that mounts the dirs can read, made without a
    syscall per file (36,000 files)."""
    root = real[0] if len(real) == 1 else os.path.commonpath(real)  # what names are relative to
    return [Path(root, name) for name in names]


def _scan(split: str, paths: list[Path], fmts: list[Format], total: int, cfg: PreprocessConfig) -> list[Scan]:
    """The scans of ``paths`` (``total`` bytes when listed), with a progress bar where it is worth one."""
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"{split}: hashing {len(paths)} shards",
              dynamic_ncols=True, disable=total < (256 << 20)) as bar:
        return scan_shards(paths, fmts, cfg.task_bytes, cfg.text_column, progress=bar.update, total_bytes=total)


@dataclass
class Reuse:
    """What the reuse check of a split's pieces goes by."""

    out_dir: Path  # as given: warnings name it so
    fresh: frozenset[str]  # keys this build's slices wrote
    listed: dict[str, Listed]  # pieces of the split's manifest whose records and arrays are there
    overwrite: bool
    verify: bool


def _listed(old: Manifest | None, out_dir: Path) -> dict[str, Listed]:
    """The pieces ``old`` lists whose two records are as they were when it was written (present, and not
    written since: a record rewritten or edited after the manifest is read, not trusted), by key."""
    if old is None:
        return {}
    try:
        written = os.stat(out_dir / MANIFEST_NAME).st_mtime_ns
    except OSError:
        return {}

    def unchanged(name: str) -> bool:
        try:
            return os.stat(out_dir / name).st_mtime_ns <= written
        except OSError:
            return False

    return {p.key: (p, members) for p, members in zip(old.pieces, old.piece_shards())
            if p.blocks is not None and unchanged(piece_record_name(p.key))
            and unchanged(blocks_record_name(p.blocks.key))}


def _piece(split: str, where: Path, group: list[int], paths: list[Path], fmts: list[Format],
           scans: list[Scan | None], reading: Reading, tokenizer_digest: str, max_seq_length: int,
           reuse: Reuse) -> PieceJob:
    """The job of the piece of shards ``group``: its keys, and what of it the cache holds.

    A piece the split's manifest lists, with the same keys, shards and files
    (each array's header and size checked), is taken from the manifest; any
    other is checked by its records (records.py), as after a crash. Both say
    the same, since the manifest is made from the records; the manifest is one
    read instead of 70,000 at 36,000 pieces.
    """
    own = [scans[i] for i in group]
    assert all(s is not None for s in own), "a piece's shards are scanned before it is planned"
    read = piece_read([fmts[i] for i in group], reading.column, reading.task_bytes)
    if reading.select is not None:  # which documents this side of a held-out split takes
        read = {**(read or {}), "select": list(reading.select)}
    key = piece_key(own, tokenizer_digest, read)  # type: ignore[arg-type]
    job = PieceJob(split, where, key, block_key(key, max_seq_length), max_seq_length, group,
                   [paths[i] for i in group], [fmts[i] for i in group], own, reading)  # type: ignore[arg-type]
    if reuse.overwrite and key not in reuse.fresh:
        return job
    digests = [s.digest for s in own]  # type: ignore[union-attr]
    listed = None if reuse.overwrite or reuse.verify or key in reuse.fresh else reuse.listed.get(key)
    if listed is not None and records.listed_intact(reuse.out_dir, listed, job.block_key, digests):
        job.listed = listed
        return job
    job.record = records.tokens_record(reuse.out_dir, key, digests, reuse.verify)
    if job.record is not None:
        job.blocks = records.blocks_record(reuse.out_dir, job.block_key, reuse.verify)
    return job


def piece_key(scans: list[Scan], tokenizer_digest: str, read: dict[str, Any] | None = None) -> str:
    """The key of a piece of these shards. Where a giant line was cut (ranges.py), the cut
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


def piece_groups(names: list[str], sizes: list[int], piece_bytes: int) -> list[list[int]]:
    """The shard indices of each piece (``group_shards``), consecutive."""
    groups, first = [], 0
    for n in group_shards(names, sizes, piece_bytes):
        groups.append(list(range(first, first + n)))
        first += n
    return groups


PIECE_CAP = 4  # a piece of small files closes at this many times --task_size_mb, hash or not


def group_shards(names: list[str], sizes: list[int], target: int) -> list[int]:
    """How many consecutive shards each piece holds (common/format.py), from names and sizes alone.

    A shard of at least ``target / 2`` bytes is a piece of its own. Small
    shards are grouped, and a group ends after a shard whose *name* hashes
    to 0 modulo ``m``, ``m`` the power of two nearest to how many typical
    (median) small shards make ``target``: boundaries depend on names, not
    on sizes, so editing one small file changes its own piece only, and
    adding or removing one changes the piece it joins or leaves. A group
    also ends at ``PIECE_CAP x target`` bytes, so a run of unlucky names
    cannot grow one piece without bound. Never on worker or node counts.
    """
    small = sorted(size for size in sizes if 2 * size < target)
    typical = max(1, small[len(small) // 2]) if small else target
    m = 1 << max(0, round(math.log2(max(1.0, target / typical))))
    counts: list[int] = []
    n = acc = 0
    for name, size in zip(names, sizes):
        big = 2 * size >= target
        if big and n:  # a big shard stands alone: close the group before it
            counts.append(n)
            n = acc = 0
        n, acc = n + 1, acc + size
        if big or xxhash.xxh64_intdigest(name.encode("utf-8")) % m == 0 or acc >= PIECE_CAP * target:
            counts.append(n)
            n = acc = 0
    if n:
        counts.append(n)
    return counts


def assign(piece_bytes: list[int], n: int) -> list[int]:
    """The slice of each piece: biggest pieces first, each to the slice with the fewest bytes so far
    (ties: the lower index). Depends only on the sizes and ``n``, so every slice agrees."""
    owner = [0] * len(piece_bytes)
    load = [0] * n
    for i in sorted(range(len(piece_bytes)), key=lambda i: (-piece_bytes[i], i)):
        k = min(range(n), key=lambda s: (load[s], s))
        owner[i] = k
        load[k] += piece_bytes[i]
    return owner
