"""manifest.json: the identity and table of contents of one preprocessed split.

Schema (``format_version`` 2), every field written by ``Manifest.to_dict``::

    format_version   int, FORMAT_VERSION of common/format.py
    created_by       {command: argv list, version, created_at (UTC ISO 8601)}
    input_dir        absolute path of the text dir the shards came from; of
                     each dir, comma-separated, when several were given
    tokenizer        TokenizerIdentity: {type, name_or_path, files: {name: digest},
                      settings, digest, class, vocab_size, dtype,
                      special_ids: {bos, eos, pad, unk, mask},
                      separator: {token, id}, encoder}
    parameters       Parameters: {ext (one extension, or several sorted and
                      comma-separated: jsonl.zst,parquet,txt), max_seq_length, datasets_type,
                      add_space_token, cleaning, packing, recursive,
                      text_column (JSON Lines and Parquet only),
                      validation_split ({percentage, seed, side}: only
                      when a validation split is held out of the training dir),
                      task_size_mb}
    shards[]         one per input file, in sorted order:
                     {path (relative to input_dir; with several dirs, to
                      their common parent), bytes, digest, mtime_ns (the
                      file's before it was hashed), lines,
                      tokens, invalid_utf8, lines_without_tokens (cleaned
                      lines that encoded to no id, dropped), unk_tokens (ids of
                      the unknown token), line_hist, bad_records (records with
                      no usable text: not JSON, no text field, null; damaged
                      compressed data), text_bytes (UTF-8 bytes of the text
                      this split took from the file: decompressed, of the text
                      field of JSON Lines and Parquet; absent if built before
                      it was recorded)}
    pieces[]         runs of consecutive shards stored as one stream, in order:
                     {key, shards (how many of shards[] it holds), lines, tokens,
                      files: {tokens: FILE, lines: FILE},
                      blocks: {key, max_seq_length, blocks, lines_split,
                               block_hist, file: FILE}}
                     FILE = {path (relative to the split dir), bytes, digest,
                             dtype, shape}
    totals           {shards, pieces, bytes, lines, tokens, blocks, lines_split,
                      invalid_utf8, lines_without_tokens, unk_tokens, bad_records,
                      disk_bytes}
    stats            {length_bins, line_hist, block_hist}

Written last and atomically: if it exists, the run that wrote it finished.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from common.format import FORMAT_VERSION, MANIFEST_NAME, FormatError, length_bins, tmp_name
from common.hashing import fingerprint


@dataclass(frozen=True)
class TokenizerSource:
    """What defines a tokenizer, known without loading it: its digest is part of every cache key.

    ``name_or_path`` is where it lives, not what it is, so it is left out of
    the digest: a copied tokenizer keeps its caches.
    """

    type: str
    name_or_path: str
    files: dict[str, str]  # file name -> content digest
    settings: dict[str, Any]  # e.g. add_space_token
    digest: str


@dataclass(frozen=True)
class SpecialIds:
    bos: int  # or [CLS]: what opens a block
    eos: int  # or [SEP]: what closes it
    pad: int | None
    unk: int | None
    mask: int | None


@dataclass(frozen=True)
class Separator:
    """The id written after every line in a token stream."""

    token: str
    id: int


@dataclass(frozen=True)
class TokenizerIdentity(TokenizerSource):
    """A loaded tokenizer as the manifest records it: its source plus what packing and training need."""

    class_name: str = field(metadata={"json": "class"})
    vocab_size: int
    dtype: str  # of the token arrays: common.format.token_dtype(vocab_size)
    special_ids: SpecialIds
    separator: Separator
    encoder: str | None = field(default=None, metadata={"omit_none": True})  # the backend preprocessing used

    def description(self) -> tuple:
        """What packing and training take from the tokenizer, beyond its files: must match the loaded one's."""
        return self.vocab_size, self.dtype, self.special_ids, self.separator

    def validate(self, where: str) -> None:
        from common.format import token_dtype

        ids = {**vars(self.special_ids), "separator": self.separator.id}
        bad = {k: v for k, v in ids.items() if v is not None and not 0 <= v < self.vocab_size}
        if self.vocab_size < 1 or bad:
            raise ShapeError(f"{where}: ids {bad} outside the vocabulary of {self.vocab_size}")
        if self.dtype != token_dtype(self.vocab_size).name:
            raise ShapeError(f"{where}.dtype: {self.dtype!r} for a vocabulary of {self.vocab_size}")


@dataclass(frozen=True)
class Parameters:
    """The settings, besides the tokenizer, that the arrays depend on."""

    ext: str  # --ext as normalised (common/config.py: normalise_ext): txt, or a list: jsonl.zst,parquet,txt
    max_seq_length: int
    datasets_type: str
    add_space_token: bool
    cleaning: dict[str, Any]
    packing: dict[str, Any]
    recursive: bool = False  # shards were looked for in subdirectories too
    text_column: str | None = field(default=None, metadata={"omit_none": True})  # JSON Lines, Parquet: the text's
    # A split held out of the training dir: {percentage, seed, side: train|validation}
    validation_split: dict[str, Any] | None = field(default=None, metadata={"omit_none": True})
    # --task_size_mb: how shards were grouped into pieces and cut into tasks; a rebuild with the same value
    # reuses every piece (common/rebuild.py). Absent from manifests of version 0.1 caches.
    task_size_mb: float | None = field(default=None, metadata={"omit_none": True})


@dataclass(frozen=True)
class FileInfo:
    """One array file of the cache, as the writer left it."""

    path: str
    bytes: int
    digest: str
    dtype: str
    shape: list[int]

    def validate(self, where: str) -> None:
        inside(self.path, f"{where}.path")
        if self.bytes < 0 or any(n < 0 for n in self.shape):
            raise ShapeError(f"{where}: negative size")


@dataclass(frozen=True)
class BlocksInfo:
    """The FULL-SENTENCES block index of one piece for one max_seq_length."""

    key: str
    max_seq_length: int
    blocks: int
    lines_split: int
    block_hist: list[int]
    file: FileInfo

    def validate(self, where: str) -> None:
        if self.file.shape != [self.blocks, 2] or self.file.dtype != "int64" or self.max_seq_length < 3:
            raise ShapeError(f"{where}: {self.blocks} blocks but the file holds {self.file.shape} x {self.file.dtype}")


@dataclass(frozen=True)
class ShardInfo:
    """One input file: where it was, its bytes, and what its text became (its lines are in its piece)."""

    path: str
    bytes: int
    digest: str
    lines: int
    tokens: int
    invalid_utf8: int
    lines_without_tokens: int
    unk_tokens: int  # ids of the unknown token: text the vocabulary does not cover
    line_hist: list[int]
    bad_records: int = 0  # records with no usable text (JSON Lines, Parquet), damaged compressed data
    # st_mtime_ns of the file just before it was hashed: with ``bytes``, what lets the train stage's
    # check trust an unchanged file without reading it (common/check.py). Where the file is, not what.
    mtime_ns: int | None = field(default=None, metadata={"omit_none": True})
    # Bytes of text read, as opposed to ``bytes`` as stored (preprocess/encode.py: text_lines, _Docs);
    # None in records written before it was counted.
    text_bytes: int | None = field(default=None, metadata={"omit_none": True})

    def validate(self, where: str) -> None:
        inside(self.path, f"{where}.path")
        if min(self.bytes, self.lines, self.tokens, self.invalid_utf8, self.lines_without_tokens,
               self.unk_tokens, self.bad_records, self.text_bytes or 0) < 0:
            raise ShapeError(f"{where}: negative count")


@dataclass(frozen=True)
class PieceInfo:
    """Consecutive shards tokenized as one stream: the arrays, and the block index for one max_seq_length."""

    key: str
    shards: int
    lines: int
    tokens: int
    files: dict[str, FileInfo]
    blocks: BlocksInfo | None = None

    def validate(self, where: str) -> None:
        if self.shards < 1:
            raise ShapeError(f"{where}.shards: {self.shards}, a piece holds at least one shard")
        if set(self.files) != {"tokens", "lines"}:
            raise ShapeError(f"{where}.files: {sorted(self.files)}, expected tokens and lines")
        tokens, lines = self.files["tokens"], self.files["lines"]
        if tokens.shape != [self.tokens] or lines.shape != [self.lines + 1] or lines.dtype != "int64":
            raise ShapeError(f"{where}: {self.tokens} tokens and {self.lines} lines, but files of "
                             f"{tokens.shape} and {lines.shape} x {lines.dtype}")

    def check_members(self, members: list[ShardInfo], where: str) -> None:
        """ShapeError unless the piece's lines and tokens are its shards' sums."""
        if (self.lines, self.tokens) != (sum(s.lines for s in members), sum(s.tokens for s in members)):
            raise ShapeError(f"{where}: its lines and tokens are not its shards' sums")

    def arrays(self) -> list[FileInfo]:
        return [*self.files.values(), *([self.blocks.file] if self.blocks else [])]

    @staticmethod
    def from_dict(d: Any, where: str = "piece") -> PieceInfo:
        return build(PieceInfo, d, where)


@dataclass(frozen=True)
class Manifest:
    input_dir: str
    tokenizer: TokenizerIdentity
    parameters: Parameters
    shards: list[ShardInfo]
    pieces: list[PieceInfo]
    created_by: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    DERIVED: typing.ClassVar[tuple[str, ...]] = ("totals", "stats")  # written for readers, recomputed on load

    def validate(self, where: str) -> None:
        """The pieces hold the shards, in order, and their line and token counts add up."""
        if sum(p.shards for p in self.pieces) != len(self.shards):
            raise ShapeError(f"{where}.pieces: hold {sum(p.shards for p in self.pieces)} shards, "
                             f"the manifest lists {len(self.shards)}")
        for k, (piece, members) in enumerate(zip(self.pieces, self.piece_shards())):
            piece.check_members(members, f"{where}.pieces[{k}]")

    def piece_shards(self) -> list[list[ShardInfo]]:
        """The shards of each piece, in order."""
        out, i = [], 0
        for p in self.pieces:
            out.append(self.shards[i : i + p.shards])
            i += p.shards
        return out

    def totals(self) -> dict[str, int]:
        blocks = [p.blocks for p in self.pieces if p.blocks is not None]
        disk = sum(f.bytes for p in self.pieces for f in p.arrays())
        return {
            "shards": len(self.shards),
            "pieces": len(self.pieces),
            "bytes": sum(s.bytes for s in self.shards),
            "lines": sum(s.lines for s in self.shards),
            "tokens": sum(s.tokens for s in self.shards),
            "blocks": sum(b.blocks for b in blocks),
            "lines_split": sum(b.lines_split for b in blocks),
            "invalid_utf8": sum(s.invalid_utf8 for s in self.shards),
            "lines_without_tokens": sum(s.lines_without_tokens for s in self.shards),
            "unk_tokens": sum(s.unk_tokens for s in self.shards),
            "bad_records": sum(s.bad_records for s in self.shards),
            "disk_bytes": disk,
        }

    def stats(self) -> dict[str, list[int]]:
        def total(hists: list[list[int]]) -> list[int]:
            return [sum(col) for col in zip(*hists)] if hists else []

        return {
            "length_bins": [int(b) for b in length_bins()[:-1]],
            "line_hist": total([s.line_hist for s in self.shards]),
            "block_hist": total([p.blocks.block_hist for p in self.pieces if p.blocks]),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "created_by": self.created_by,
            "input_dir": self.input_dir,
            "tokenizer": to_json(self.tokenizer),
            "parameters": to_json(self.parameters),
            "shards": [to_json(s) for s in self.shards],
            "pieces": [to_json(p) for p in self.pieces],
            "totals": self.totals(),
            "stats": self.stats(),
        }

    def fingerprint(self, where: bool = True) -> str:
        """The dataset's identity: everything but who wrote it and when; without ``where``, also
        less where the text and the tokenizer were (the same cache mounted elsewhere)."""
        d = self.to_dict()
        d.pop("created_by")
        if not where:
            d.pop("input_dir")
            d["tokenizer"].pop("name_or_path")
            for shard in d["shards"]:
                shard.pop("mtime_ns", None)
        return fingerprint(d)

    @staticmethod
    def from_dict(d: Any, source: str = "manifest") -> Manifest:
        """The manifest in ``d``, or FormatError naming ``source`` and the first thing wrong.

        Every field is type-checked, because the file is user-reachable input:
        a hand edit or a bad disk must give a one-line error, never a
        traceback deep inside a reader.
        """
        version = d.get("format_version") if isinstance(d, dict) else None
        if isinstance(d, dict) and version != FORMAT_VERSION:
            raise FormatError(
                f"{source}: format_version {version}, this version reads {FORMAT_VERSION}"
            )
        try:
            m = build(Manifest, d, "manifest")
        except ShapeError as e:
            raise FormatError(f"{source}: malformed manifest ({e})") from None
        return m


def unk_share(unk_tokens: int, tokens: int, lines: int) -> float:
    """The unknown token's share of the ids (separators, one a line, not counted)."""
    return unk_tokens / max(tokens - lines, 1)


class ShapeError(ValueError):
    """A JSON value does not have the shape a dataclass of this module needs; says where."""


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


Converter = Callable[[Any, str], Any]


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (and turned into dataclasses), or ShapeError."""
    return _converter(hint)(value, where)


@functools.cache
def _converter(hint: Any) -> Converter:
    """The checker of values of type ``hint``, worked out once per type: a manifest holds two dataclasses
    per piece and one per shard, and asking ``typing`` what a hint is for each value cost most of a load."""
    if hint is Any:
        return lambda value, where: value
    if _is_union(hint):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        convert = _converter(inner)
        return lambda value, where: None if value is None else convert(value, where)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return _list_of(item)
    if origin is dict:
        _, item = typing.get_args(hint)
        return _dict_of(item)
    if is_dataclass(hint):
        return lambda value, where: build(hint, value, where)
    if hint is int:
        def integer(value: Any, where: str) -> Any:
            if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ShapeError(f"{where}: expected an integer, found {value!r:.40}")
            return value
        return integer

    def plain(value: Any, where: str) -> Any:
        if not isinstance(value, hint):
            raise ShapeError(f"{where}: expected {hint.__name__}, found {value!r:.40}")
        return value
    return plain


def _list_of(item: Any) -> Converter:
    convert = _converter(item)

    def checked(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise ShapeError(f"{where}: expected a list, found {type(value).__name__}")
        if item is int and all(type(v) is int for v in value):  # histograms, shapes: the common case, fast
            return list(value)
        return [convert(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return checked


def _dict_of(item: Any) -> Converter:
    convert = _converter(item)

    def checked(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ShapeError(f"{where}: expected an object, found {type(value).__name__}")
        return {k: convert(v, f"{where}.{k}") for k, v in value.items()}
    return checked


@functools.cache
def _fields_of(cls: type) -> tuple[tuple[tuple[str, str, Converter, bool], ...], frozenset[str]]:
    """(name, JSON key, converter, required) of each field, and the keys a JSON object may hold: worked
    out once per class (``get_type_hints`` is slow, and a manifest holds a dataclass per shard)."""
    hints = typing.get_type_hints(cls)
    spec = tuple((f.name, _json_name(f), _converter(hints[f.name]),
                  f.default is MISSING and f.default_factory is MISSING) for f in fields(cls))
    return spec, frozenset(k for _, k, _, _ in spec) | frozenset(getattr(cls, "DERIVED", ()))



def build(cls: type, d: Any, where: str) -> Any:
    """An instance of the dataclass ``cls`` from the JSON object ``d``, every field type-checked."""
    if not isinstance(d, dict):
        raise ShapeError(f"{where}: expected an object, found {type(d).__name__}")
    spec, allowed = _fields_of(cls)
    values = {}
    for name, key, convert, required in spec:
        if key in d:
            values[name] = convert(d[key], f"{where}.{key}")
        elif required:
            raise ShapeError(f"{where}: no {key!r}")
    if not allowed.issuperset(d):
        raise ShapeError(f"{where}: unexpected {sorted(set(d) - allowed)[0]!r}")
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate(where)
    return obj


def _json_name(f: Any) -> str:
    return f.metadata.get("json", f.name)


@functools.cache
def _json_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    return tuple((f.name, _json_name(f), bool(f.metadata.get("omit_none"))) for f in fields(cls))


def to_json(obj: Any) -> Any:
    """A dataclass of this module as the JSON object ``build`` reads back, fields in their order."""
    if is_dataclass(obj):
        return {key: to_json(getattr(obj, name)) for name, key, omit_none in _json_fields(type(obj))
                if not (omit_none and getattr(obj, name) is None)}
    if isinstance(obj, list):
        if all(type(v) is int for v in obj):  # histograms and shapes, thousands of them
            return list(obj)
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def inside(path: str, where: str) -> str:
    """``path`` if it is relative and stays inside its base dir: a file named by the
    manifest or a record must never lead a reader (or the cleanup) elsewhere."""
    # PurePosixPath(path).is_absolute() / ".." in its parts, as string tests (one per file of a manifest)
    if not path or path[0] == "/" or "\\" in path or "\0" in path or ".." in path.split("/"):
        raise ShapeError(f"{where}: path {path!r} leaves its dir")
    return path


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that ``path`` holds either the old content or the new, never a torn file.

    Temp file in the same dir, fsync, ``os.replace``, then fsync the dir so the
    rename itself survives a power cut.
    """
    path = Path(path)
    tmp = path.with_name(tmp_name(path.name, dotted=True))
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a signal: leave no temp file behind
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; FormatError (one line, naming the file) for anything unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "not UTF-8" if isinstance(e, UnicodeDecodeError) else f"not valid JSON: {' '.join(str(e).split())[:80]}"
        raise FormatError(f"{path}: {reason}") from None
    except OSError as e:
        raise FormatError(f"{path}: cannot be read ({e.strerror})") from None


def load_manifest(split_dir: str | Path) -> Manifest:
    """Read ``<split_dir>/manifest.json``; FormatError (one line naming the file) if absent or wrong.

    The message says what is wrong; each command adds the fix in its own words.
    """
    path = Path(split_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FormatError(f"{path}: no manifest; this split was never completely preprocessed")
    with gc_paused():
        return Manifest.from_dict(read_json(path), source=str(path))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a manifest's records are built: they hold no cycles, and the
    collector, woken by every 700 new objects, walked all of them again and again (a third of a load)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def write_manifest(split_dir: str | Path, manifest: Manifest) -> None:
    write_json_atomic(Path(split_dir) / MANIFEST_NAME, manifest.to_dict())
