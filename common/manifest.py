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

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.format import FORMAT_VERSION, MANIFEST_NAME, FormatError, length_bins
from common.hashing import fingerprint
from common.json_files import read_json, write_json_atomic
from common.typed_json import ShapeError, from_json, gc_paused, to_json


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
    # Bytes of text read, as opposed to ``bytes`` as stored (preprocess/cleaning.py: text_lines; formats.py: Docs);
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
        return from_json(PieceInfo, d, where)


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
            if hists and len({len(h) for h in hists}) == 1:  # one row a shard: summed in numpy (36,000 rows)
                return np.asarray(hists, dtype=np.int64).sum(axis=0).tolist()
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
            m = from_json(Manifest, d, "manifest")
        except ShapeError as e:
            raise FormatError(f"{source}: malformed manifest ({e})") from None
        return m


def unk_share(unk_tokens: int, tokens: int, lines: int) -> float:
    """The unknown token's share of the ids (separators, one a line, not counted)."""
    return unk_tokens / max(tokens - lines, 1)


def inside(path: str, where: str) -> str:
    """``path`` if it is relative and stays inside its base dir: a file named by the
    manifest or a record must never lead a reader (or the cleanup) elsewhere."""
    # PurePosixPath(path).is_absolute() / ".." in its parts, as string tests (one per file of a manifest)
    if not path or path[0] == "/" or "\\" in path or "\0" in path or ".." in path.split("/"):
        raise ShapeError(f"{where}: path {path!r} leaves its dir")
    return path



def load_manifest(split_dir: str | Path) -> Manifest:
    """Read ``<split_dir>/manifest.json``; FormatError (one line naming the file) if absent or wrong.

    The message says what is wrong; each command adds the fix in its own words.
    """
    path = Path(split_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FormatError(f"{path}: no manifest; this split was never completely preprocessed")
    with gc_paused():
        return Manifest.from_dict(read_json(path), source=str(path))




def write_manifest(split_dir: str | Path, manifest: Manifest) -> None:
    write_json_atomic(Path(split_dir) / MANIFEST_NAME, manifest.to_dict())
