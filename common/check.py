"""The one answer to "is this cache usable for this run?", for every command.

``check_split`` reads a split's manifest once and compares it with what the
caller knows now: the tokenizer, ``--max_seq_length``, the arrays on disk
and, when given, the text dir. It returns what it found as data; each command
words it (``mlm-train`` and ``run_mlm.py`` refuse, ``mlm-inspect`` reports,
the preprocess planner rebuilds).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.format import MANIFEST_NAME, FormatError, check_npy, npy_bytes, piece_record_name
from common.hashing import file_digest, file_digests
from common.json_files import read_json
from common.manifest import FileInfo, Manifest, ShardInfo, TokenizerIdentity, TokenizerSource, load_manifest


@dataclass(frozen=True)
class SplitCheck:
    """What ``check_split`` found; every field that is empty or None means "nothing wrong there"."""

    split_dir: Path
    manifest: Manifest | None
    unreadable: str | None = None  # why there is no usable manifest: missing, malformed, another format version
    tokenizer: str | None = None  # how the tokenizer asked for differs from the cache's, in words
    max_seq_length: int | None = None  # what the blocks were packed for, when another length was asked
    damaged: tuple[str, ...] = ()  # arrays whose size (or, when asked, digest) is not the manifest's
    input_dir: str | None = None  # the text dir (or dirs, comma-separated) compared, if any
    unchanged: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    hashed: int = 0  # text files read to compare them (the others were vouched for by their stat)

    @property
    def stale(self) -> bool:
        """The text or the tokenizer moved on since the cache was built."""
        return bool(self.tokenizer or self.changed or self.added or self.removed)

    @property
    def usable(self) -> bool:
        return self.unreadable is None and not self.damaged and not self.stale and self.max_seq_length is None

    def changes(self, limit: int = 10) -> str:
        """The text's changes on one line: per state its count and its first ``limit`` names."""
        out = []
        for state in ("changed", "added", "removed"):
            names = getattr(self, state)
            if names:
                more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
                out.append(f"{len(names):,} {state} ({', '.join(names[:limit])}{more})")
        if self.unchanged:
            out.append(f"{len(self.unchanged):,} unchanged")
        return ", ".join(out)

    def shard_lines(self) -> list[str]:
        """One ``  <state> <shard>`` line per shard of the manifest and the text dir, by name."""
        states = {name: state for state in ("unchanged", "changed", "added", "removed") for name in getattr(self, state)}
        return [f"  {states[name]:<9} {name}" for name in sorted(states)]

    def problems(self) -> list[str]:
        """What makes the split unusable, one finding a line, in the user's words."""
        if self.unreadable:
            return [self.unreadable]
        out = []
        if self.tokenizer:
            out.append(f"{self.split_dir / MANIFEST_NAME} was built with another tokenizer: {self.tokenizer}")
        if self.max_seq_length is not None:
            m = self.manifest
            out.append(f"{self.split_dir}: blocks were packed for --max_seq_length {m.parameters.max_seq_length if m else '?'},"
                       f" this run asks for {self.max_seq_length}; rerun preprocessing with the new value "
                       "(only the packing is redone)")
        out += list(self.damaged)
        for state in ("changed", "added", "removed"):
            names = getattr(self, state)
            if names:
                more = f" and {len(names) - 5} more" if len(names) > 5 else ""
                out.append(f"{self.split_dir} is stale against {self.input_dir}: {state} {', '.join(names[:5])}{more}")
        return out


def tokenizer_difference(before: TokenizerSource, now: TokenizerSource) -> str:
    """What changed between two tokenizer identities, in words: type, settings, which files."""
    out = [f"{k} {getattr(before, k)!r} -> {getattr(now, k)!r}" for k in ("type", "settings")
           if getattr(before, k) != getattr(now, k)]
    changed = sorted(n for n in set(before.files) | set(now.files) if before.files.get(n) != now.files.get(n))
    if changed:
        out.append("files differ: " + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else ""))
    return "; ".join(out) or f"digest {before.digest} -> {now.digest}"


def _damaged(split_dir: Path, m: Manifest, digests: bool) -> tuple[str, ...]:
    found = []
    root = f"{split_dir}{os.sep}"
    for piece, members in zip(m.pieces, m.piece_shards()):
        holds = members[0].path + (f" and {len(members) - 1} more shards" if len(members) > 1 else "")
        for f in piece.arrays():
            if not digests and _size_is_right(root + f.path, f):
                continue  # the header is checked where the file is read (common/reader.py)
            path = split_dir / f.path
            try:
                check_npy(path, np.dtype(f.dtype), tuple(f.shape))
                if digests and file_digest(path) != f.digest:
                    raise FormatError(f"{path}: content differs from the manifest's digest (altered)")
            except FormatError as e:
                found.append(f"{holds}: {e}")
            except TypeError:  # a dtype numpy does not know
                found.append(f"{holds}: {path}: dtype {f.dtype!r} is not an array dtype")
        if digests:
            found += _membership(split_dir, piece.key, members, holds)
    return tuple(found)


def _size_is_right(path: str, f: FileInfo) -> bool:
    """Whether ``path`` has the size our writer gives ``f`` (fixed header + data): a stat, where a full
    check_npy opens and reads each file (the reader checks each header when it first opens the file)."""
    try:
        return os.stat(path).st_size == npy_bytes(_itemsize(f.dtype), f.shape)
    except (OSError, TypeError):
        return False


@functools.cache
def _itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def _membership(split_dir: Path, key: str, members: list, holds: str) -> list[str]:
    """The shards a piece's own record lists, against those the manifest gives it: an edit that moves a
    shard between pieces keeps every count and array intact, but not this."""
    path = split_dir / piece_record_name(key)
    try:
        listed = [s["digest"] for s in read_json(path)["shards"]]
    except (FormatError, KeyError, TypeError):
        return [f"{holds}: {path}: missing or unreadable, so which shards the piece holds cannot be checked"]
    if listed != [s.digest for s in members]:
        return [f"{holds}: the manifest gives this piece other shards than its record {path.name} lists "
                "(edited by hand?); rerun preprocessing to rewrite the manifest"]
    return []


def listed_ext(name: str, ext: str) -> str | None:
    """The extension of ``ext`` (one, or several separated by commas: ``txt,jsonl.zst,parquet``) that the
    file name ``name`` ends with (``.<ext>``); the longest where several do, so with ``zst,jsonl.zst`` a
    ``*.jsonl.zst`` file is JSON Lines and is listed once. None: the file is not an input."""
    if "," not in ext:
        return ext if name.endswith(f".{ext}") else None
    return max((e for e in ext.split(",") if name.endswith(f".{e}")), key=len, default=None)


def _named_files(d: Path, ext: str, recursive: bool, as_path: Callable[[str], Any] = Path) -> list[tuple[str, Any]]:
    """(path under ``d`` in POSIX form, ``as_path(path)``) of every input file of ``d``, sorted by the first.
    Strings, not Path arithmetic: the train stage lists 30,000 files before every run (``as_path=str``
    there: making 30,000 Paths alone took 0.3 s)."""
    base = os.fspath(d)
    if recursive:
        out = []
        for root, _, files in os.walk(base):
            rel = os.path.relpath(root, base)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            out += [(prefix + f, as_path(os.path.join(root, f))) for f in files if listed_ext(f, ext)]
    else:
        with os.scandir(base) as entries:
            out = [(e.name, as_path(e.path)) for e in entries if listed_ext(e.name, ext) and not e.is_dir()]
    return sorted(out)


def list_text_files(d: Path, ext: str, recursive: bool) -> list[Path]:
    """Every file directly in ``d`` or, with ``recursive``, anywhere below it, whose name ends with
    ``.<ext>`` (with several extensions, comma-separated: any of them; see ``listed_ext``), sorted by
    its path under ``d``. Links to dirs are not entered (a link loop would never end); links to files
    are listed like files."""
    return [p for _, p in _named_files(d, ext, recursive)]


def input_dirs(value: str | Path) -> list[Path]:
    """The dirs a ``--train_dir``/``--eval_dir`` value (or a manifest's ``input_dir``) names: one dir,
    or several separated by commas (a dir whose own name holds a comma is taken whole)."""
    text = str(value)
    if "," not in text or Path(text).is_dir():
        return [Path(text)]
    return [Path(x) for x in text.split(",") if x]


def list_inputs(dirs: list[Path], ext: str, recursive: bool, as_path: Callable[[str], Any] = Path
                ) -> list[tuple[str, Any]]:
    """(name, path) of every ``*.<ext>`` file of ``dirs`` (``ext``: one extension, or several separated
    by commas, as ``list_text_files`` takes), sorted by name. A name is the file's path
    under its dir; with several dirs, under their common parent (``a/x.txt``, ``b/x.txt``), so the
    same corpus mounted elsewhere gives the same names. UserError for a dir given twice, or inside another
    with ``recursive``. ``as_path``: what a path is given as (``str`` is cheaper for many files)."""
    if len(dirs) == 1:
        return _named_files(dirs[0], ext, recursive, as_path)
    real = [d.resolve() for d in dirs]
    for i, a in enumerate(real):
        for j, b in enumerate(real):
            if i != j and (a == b or (recursive and a in b.parents)):  # files listed twice
                raise UserError(f"input dirs {dirs[i]} and {dirs[j]}: "
                                f"{'the same dir' if a == b else 'the second is inside the first'}; give each once")
    root = Path(os.path.commonpath(real))
    found = [(f"{r.relative_to(root).as_posix()}/{name}", p)
             for d, r in zip(dirs, real) for name, p in _named_files(d, ext, recursive, as_path)]
    return sorted(found)


# A file whose recorded mtime lies this close to when the manifest was written is hashed even if its stat
# matches: a write in the same clock tick as the scan (1-2 s on FAT, some NFS servers; a few ms on ext4)
# leaves the mtime unchanged. Git's "racily clean" entries, the same way.
RACY_NS = 2_000_000_000


def _vouched(shard: ShardInfo, st: os.stat_result, racy_after: int) -> bool:
    """True if ``st`` says the file is the one hashed when the manifest was made (same size, same
    mtime, and that mtime not racily close to the manifest's writing)."""
    return (shard.mtime_ns is not None and shard.mtime_ns < racy_after and st.st_size == shard.bytes
            and st.st_mtime_ns == shard.mtime_ns)


def _text_states(m: Manifest, input_dir: str | Path, by_stat: bool, written_ns: int) -> dict:
    """Shards of the manifest against the ``*.<ext>`` files of ``input_dir`` now, by content: each file
    is hashed, or with ``by_stat`` only those whose size or mtime is not the one recorded when the
    manifest (written at ``written_ns``) was made."""
    dirs = input_dirs(input_dir)
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"input dir {d} not found; give the dir where the shards are now")
    now = dict(list_inputs(dirs, m.parameters.ext, m.parameters.recursive, as_path=str))
    before = {s.path: s for s in m.shards}
    both = sorted(set(now) & set(before))
    racy_after = written_ns - RACY_NS
    to_hash = [n for n in both if not (by_stat and _vouched(before[n], os.stat(now[n]), racy_after))]
    digests = dict(zip(to_hash, file_digests([now[name] for name in to_hash],
                                             total_bytes=sum(before[n].bytes for n in to_hash))))
    changed = {n for n, d in digests.items() if d != before[n].digest}
    return {
        "unchanged": tuple(n for n in both if n not in changed),
        "changed": tuple(n for n in both if n in changed),
        "added": tuple(sorted(set(now) - set(before))),
        "removed": tuple(sorted(set(before) - set(now))),
        "hashed": len(to_hash),
    }


def check_split(split_dir: str | Path, *, tokenizer: TokenizerSource | None = None, max_seq_length: int | None = None,
                input_dir: str | Path | None = None, sizes: bool = True, digests: bool = False,
                manifest: Manifest | None = None, by_stat: bool = False) -> SplitCheck:
    """Check one split against what this run has.

    ``tokenizer``: the tokenizer this run uses (its digest against the cache's);
    ``max_seq_length``: the block size it trains with; ``input_dir``: the text
    (hashed: a read of every shard; with ``by_stat``, only of those whose size
    and mtime are not the ones recorded when they were hashed); ``sizes``: every array's size (a stat
    each; its header is read where the size differs, and by the train stage's reader when it first opens
    the file, so a header altered in place is found there, or by ``digests``); ``digests``: every array's
    header and content (a
    read of the whole cache). ``manifest``: the split's manifest, when the caller has read it already.
    """
    split_dir = Path(split_dir)
    try:
        m = manifest or load_manifest(split_dir)
    except FormatError as e:
        return SplitCheck(split_dir, None, unreadable=str(e))
    found: dict = {"input_dir": str(input_dir) if input_dir else None}
    if tokenizer is not None and tokenizer.digest != m.tokenizer.digest:
        found["tokenizer"] = tokenizer_difference(m.tokenizer, tokenizer)
    elif isinstance(tokenizer, TokenizerIdentity) and tokenizer.description() != m.tokenizer.description():
        found["tokenizer"] = ("the manifest's vocabulary size, dtype, special or separator ids differ from the "
                              f"loaded tokenizer's: {m.tokenizer.description()} != {tokenizer.description()}")
    if max_seq_length is not None and max_seq_length != m.parameters.max_seq_length:
        found["max_seq_length"] = max_seq_length
    if sizes or digests:
        found["damaged"] = _damaged(split_dir, m, digests)
    if input_dir:
        try:
            written_ns = (split_dir / MANIFEST_NAME).stat().st_mtime_ns
        except OSError:  # a manifest handed in by the caller, not on disk: hash every file
            written_ns, by_stat = 0, False
        found.update(_text_states(m, input_dir, by_stat, written_ns))
    return SplitCheck(split_dir, m, **found)


def _related(a: list[Path], b: list[Path], recursive: bool) -> tuple[Path, Path, str] | None:
    """The first dir of ``a`` that is a dir of ``b`` or, read with ``recursive``, lies inside one or holds
    one: (that dir, the other, how: "is", "is inside", "holds"); None when no dir's files are read twice."""
    for x in a:
        for y in b:
            rx, ry = x.resolve(), y.resolve()
            if rx == ry or (recursive and (rx in ry.parents or ry in rx.parents)):
                return x, y, "is" if rx == ry else ("is inside" if ry in rx.parents else "holds")
    return None


def _files_by_inode(dirs: list[Path], ext: str, recursive: bool) -> dict[tuple[int, int], Path]:
    """Every input file of ``dirs`` by (device, inode): a file reached by links of any kind is one key."""
    if not all(d.is_dir() for d in dirs):
        return {}  # a missing dir gets its own error where it is read
    out = {}
    for _, p in list_inputs(dirs, ext, recursive):
        st = os.stat(p)
        out[(st.st_dev, st.st_ino)] = p
    return out


def _shared_file(a: list[Path], b: list[Path], ext: str, recursive: bool) -> tuple[int, Path] | None:
    """(how many, the first) input files of ``b`` that are also input files of ``a``; None if none."""
    in_a, in_b = _files_by_inode(a, ext, recursive), _files_by_inode(b, ext, recursive)
    shared = sorted(str(in_b[k]) for k in set(in_a) & set(in_b))
    return (len(shared), Path(shared[0])) if shared else None


def refuse_overlap(train_dir: str, eval_dir: str, ext: str, recursive: bool) -> None:
    """UserError when the validation text is (partly) the training text: the same dir, one dir inside the
    other and read with ``recursive``, or any file listed under both (a link, say). A model evaluated on
    its training data reports a loss that means nothing, with exit 0."""
    train, evals = input_dirs(train_dir), input_dirs(eval_dir)
    related = _related(evals, train, recursive)
    if related:
        e, t, why = related
        raise UserError(f"--eval_dir {e} {why} --train_dir {t}: the model would be evaluated on text it "
                        "trains on; give an --eval_dir of other text, or hold some out of the training "
                        "dir with --validation_split_percentage instead of --eval_dir")
    shared = _shared_file(train, evals, ext, recursive)
    if shared:
        raise UserError(f"{shared[0]} files are both in --train_dir and in --eval_dir (links to one file), e.g. "
                        f"{shared[1]}: the model would be evaluated on text it trains on; give an --eval_dir of "
                        "other text")


def _overlap(a: list[Path], b: list[Path], ext: str, recursive: bool) -> str | None:
    """How dirs ``b`` share input files with dirs ``a``, in words; None when they share none."""
    related = _related(b, a, recursive)
    if related:
        return f"{related[0]} {related[2]} {related[1]}"
    shared = _shared_file(a, b, ext, recursive)
    return f"{shared[0]} files are in both (links to one file), e.g. {shared[1]}" if shared else None


def refuse_shared_corpora(train: dict[str, str], evals: dict[str, str], ext: str, recursive: bool) -> None:
    """UserError when named corpora share text: one dir (or dirs one inside the other, read with
    ``recursive``, or files linked into both) in two corpora's --train_dir, which would train on it twice
    under two names; or any corpus's --eval_dir that is another corpus's training text. ``train``/``evals``:
    each corpus's NAME=DIR value. What holds within one corpus holds across the cache."""
    names = list(train)
    dirs = {n: input_dirs(v) for n, v in train.items()}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            how = _overlap(dirs[a], dirs[b], ext, recursive)
            if how:
                raise UserError(f"--train_dir {a}=... and {b}=... share text ({how}): the model would train on "
                                "it twice, under two names; give each corpus its own dirs")
    for e_name, value in evals.items():
        for t_name in names:
            if t_name == e_name:
                continue  # within one corpus: refuse_overlap, where the corpus is preprocessed
            how = _overlap(dirs[t_name], input_dirs(value), ext, recursive)
            if how:
                raise UserError(f"--eval_dir {e_name}=... is training text of corpus {t_name} ({how}): {e_name} "
                                "would be evaluated on text the model trains on; give an --eval_dir of other text")


def refuse_shared_shards(cache: Path, manifests: dict[str, dict[str, Manifest]]) -> None:
    """UserError when named corpora hold byte-identical shards: one text trained on twice under two names, or
    one corpus's validation text that is another's training text (caches built before preprocess refused
    both). By content digest, so it holds on a node where the text is not mounted."""
    trained: dict[str, tuple[str, str]] = {}  # digest -> (corpus, shard)
    for name, splits in manifests.items():
        for s in splits["train"].shards:
            if s.lines and s.digest in trained and trained[s.digest][0] != name:
                other, path = trained[s.digest]
                raise UserError(f"{cache}: corpora {other} and {name} both train on the same text ({other}: {path}, "
                                f"{name}: {s.path}, byte-identical): it would be trained on twice, under two names; "
                                "give each corpus its own dirs and rebuild the cache")
            trained.setdefault(s.digest, (name, s.path))
    for name, splits in manifests.items():
        validation = splits.get("validation")
        if validation is None or validation.parameters.validation_split:
            continue  # held out: each shard listed holds only its held-out documents
        for s in validation.shards:
            if s.lines and s.digest in trained and trained[s.digest][0] != name:
                other, path = trained[s.digest]
                raise UserError(f"{cache}: the validation text of corpus {name} is training text of corpus {other} "
                                f"({name}/validation: {s.path} = {other}/train: {path}, byte-identical): {name}'s "
                                "loss would be measured on text the model trains on; rebuild the cache with an "
                                f"--eval_dir {name}=DIR of other text")
