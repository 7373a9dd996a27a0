"""manifest.json: the identity and table of contents of one preprocessed split.

Schema (``format_version`` 1), every field written by ``Manifest.to_dict``::

    format_version   int, FORMAT_VERSION of common/format.py
    created_by       {command: argv list, version, created_at (UTC ISO 8601)}
    input_dir        absolute path of the text dir the shards came from
    tokenizer        {type, name_or_path, class, digest, files: {name: digest},
                      vocab_size, dtype, special_ids: {bos, eos, pad, unk, mask},
                      separator: {token, id}, encoder, settings}
    parameters       {ext, max_seq_length, datasets_type, cleaning, ...}
    shards[]         {path (relative to input_dir), bytes, digest, key, lines,
                      tokens, invalid_utf8, lines_without_tokens (cleaned
                      lines that encoded to no id, dropped), line_hist,
                      files: {tokens: FILE, lines: FILE},
                      blocks: {key, max_seq_length, blocks, lines_split,
                               block_hist, file: FILE}}
                     FILE = {path (relative to the split dir), bytes, digest,
                             dtype, shape}
    totals           {shards, bytes, lines, tokens, blocks, lines_split,
                      invalid_utf8, lines_without_tokens, disk_bytes}
    stats            {length_bins, line_hist, block_hist}

Written last and atomically: if it exists, the run that wrote it finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.format import FORMAT_VERSION, MANIFEST_NAME, FormatError, length_bins
from common.hashing import fingerprint


@dataclass(frozen=True)
class FileInfo:
    """One array file of the cache, as the writer left it."""

    path: str
    bytes: int
    digest: str
    dtype: str
    shape: list[int]


@dataclass(frozen=True)
class BlocksInfo:
    """The FULL-SENTENCES block index of one shard for one max_seq_length."""

    key: str
    max_seq_length: int
    blocks: int
    lines_split: int
    block_hist: list[int]
    file: FileInfo

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BlocksInfo:
        return BlocksInfo(**{**d, "file": FileInfo(**d["file"])})


@dataclass(frozen=True)
class ShardInfo:
    """One input file: where it was, what it held, and what it became."""

    path: str
    bytes: int
    digest: str
    key: str
    lines: int
    tokens: int
    invalid_utf8: int
    lines_without_tokens: int
    line_hist: list[int]
    files: dict[str, FileInfo]
    blocks: BlocksInfo | None = None

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ShardInfo:
        files = {k: FileInfo(**v) for k, v in d["files"].items()}
        blocks = BlocksInfo.from_dict(d["blocks"]) if d.get("blocks") else None
        return ShardInfo(**{**d, "files": files, "blocks": blocks})


@dataclass(frozen=True)
class Manifest:
    input_dir: str
    tokenizer: dict[str, Any]
    parameters: dict[str, Any]
    shards: list[ShardInfo]
    created_by: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def totals(self) -> dict[str, int]:
        blocks = [s.blocks for s in self.shards if s.blocks is not None]
        disk = sum(f.bytes for s in self.shards for f in s.files.values()) + sum(b.file.bytes for b in blocks)
        return {
            "shards": len(self.shards),
            "bytes": sum(s.bytes for s in self.shards),
            "lines": sum(s.lines for s in self.shards),
            "tokens": sum(s.tokens for s in self.shards),
            "blocks": sum(b.blocks for b in blocks),
            "lines_split": sum(b.lines_split for b in blocks),
            "invalid_utf8": sum(s.invalid_utf8 for s in self.shards),
            "lines_without_tokens": sum(s.lines_without_tokens for s in self.shards),
            "disk_bytes": disk,
        }

    def stats(self) -> dict[str, list[int]]:
        def total(hists: list[list[int]]) -> list[int]:
            return [sum(col) for col in zip(*hists)] if hists else []

        return {
            "length_bins": [int(b) for b in length_bins()[:-1]],
            "line_hist": total([s.line_hist for s in self.shards]),
            "block_hist": total([s.blocks.block_hist for s in self.shards if s.blocks]),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "created_by": self.created_by,
            "input_dir": self.input_dir,
            "tokenizer": self.tokenizer,
            "parameters": self.parameters,
            "shards": [asdict(s) for s in self.shards],
            "totals": self.totals(),
            "stats": self.stats(),
        }

    def fingerprint(self) -> str:
        """The dataset's identity: everything but who wrote it and when."""
        d = self.to_dict()
        d.pop("created_by")
        return fingerprint(d)

    @staticmethod
    def from_dict(d: dict[str, Any], source: str = "manifest") -> Manifest:
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise FormatError(
                f"{source}: format_version {version}, this version reads {FORMAT_VERSION}; "
                "rebuild the cache with the preprocess command"
            )
        try:
            return Manifest(
                input_dir=d["input_dir"],
                tokenizer=d["tokenizer"],
                parameters=d["parameters"],
                shards=[ShardInfo.from_dict(s) for s in d["shards"]],
                created_by=d.get("created_by", {}),
                format_version=version,
            )
        except (KeyError, TypeError) as e:
            raise FormatError(f"{source}: malformed manifest ({e!r}); rebuild the cache") from e


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that ``path`` holds either the old content or the new, never a torn file.

    Temp file in the same dir, fsync, ``os.replace``, then fsync the dir so the
    rename itself survives a power cut.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON ({e}); delete it or rebuild the cache") from e


def load_manifest(split_dir: str | Path) -> Manifest:
    """Read ``<split_dir>/manifest.json``; FormatError (naming the file) if absent or wrong."""
    path = Path(split_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FormatError(f"{path}: no manifest; this split was never completely preprocessed")
    return Manifest.from_dict(read_json(path), source=str(path))


def write_manifest(split_dir: str | Path, manifest: Manifest) -> None:
    write_json_atomic(Path(split_dir) / MANIFEST_NAME, manifest.to_dict())
