"""A piece's two records, read back before reuse: present and intact means that part is done.

Each part of a piece (its tokens and lines; its block index for one
``--max_seq_length``) is committed by writing its JSON record last
(piece.py), so a record that names intact files of its own key is proof the
part finished, whoever wrote it: an earlier run, a slice on another node,
a Ray task. Anything else (no record, a torn or edited one, a truncated
array) means: build that part again.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common.format import (
    FormatError,
    blocks_name,
    blocks_record_name,
    check_npy,
    lines_name,
    piece_record_name,
    tokens_name,
)
from common.hashing import file_digest
from common.json_files import read_json
from common.manifest import BlocksInfo, FileInfo, PieceInfo, ShardInfo
from common.typed_json import ShapeError, from_json

Checker = Callable[[Any, str, str], list[FileInfo]]


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def tokens_record(out_dir: Path, key: str, digests: list[str], verify: bool) -> dict | None:
    """The tokens record of piece ``key`` (``pieces/<K>.json``) of shards with these ``digests``, if intact."""
    return _valid_record(out_dir, piece_record_name(key), key, _piece_record(digests), verify)


def blocks_record(out_dir: Path, key: str, verify: bool) -> dict | None:
    """The blocks record of block key ``key`` (``blocks/<K>.json``), if intact."""
    return _valid_record(out_dir, blocks_record_name(key), key, _blocks_record, verify)


@functools.cache
def _dtype(name: str) -> np.dtype:
    return np.dtype(name)


def _check_array(out_dir: Path, f: FileInfo) -> None:
    """FormatError unless the array ``f`` names holds its dtype x shape (header and size); a string
    path, not a Path: 108,000 arrays at 36,000 pieces."""
    check_npy(os.path.join(out_dir, f.path), _dtype(f.dtype), tuple(f.shape))


def listed_intact(out_dir: Path, listed: tuple[PieceInfo, list[ShardInfo]], block_key: str,
                  digests: list[str]) -> bool:
    """Whether a piece as the split's manifest lists it is what the plan needs, and its arrays are
    intact (shape and size, as a record's are checked): then its records need not be read. Shards
    without ``text_bytes`` were listed by an older writer: their records may say more."""
    info, members = listed
    if info.blocks is None or info.blocks.key != block_key or [m.digest for m in members] != digests:
        return False
    if any(m.text_bytes is None for m in members):
        return False
    try:
        for f in info.arrays():
            _check_array(out_dir, f)
    except (FormatError, TypeError, ValueError):  # TypeError: a dtype numpy does not know ("int65")
        return False  # the records' check says what is wrong, and the piece is rebuilt
    return True


def _piece_record(digests: list[str]) -> Checker:
    """A checker of a tokens record for a piece of shards with ``digests``: its shape, that it names
    exactly its key's files, and that it describes those shards."""

    def files_of(record: Any, key: str, where: str) -> list[FileInfo]:
        if not isinstance(record, dict) or not isinstance(record.get("shards"), list):
            raise ShapeError(f"{where}: not a tokens record")
        members = [from_json(ShardInfo, {**m, "path": "."} if isinstance(m, dict) else m, f"{where}.shards[{i}]")
                   for i, m in enumerate(record["shards"])]
        if [m.digest for m in members] != digests:
            raise ShapeError(f"{where}: describes other shards than its key's")
        info = from_json(PieceInfo, {**record, "shards": len(members)}, where)
        info.check_members(members, where)
        if info.key != key or {k: f.path for k, f in info.files.items()} != {"tokens": tokens_name(key),
                                                                           "lines": lines_name(key)}:
            raise ShapeError(f"{where}: names other files than its key's")
        return list(info.files.values())

    return files_of


def _blocks_record(record: Any, key: str, where: str) -> list[FileInfo]:
    info = from_json(BlocksInfo, record, where)
    if info.key != key or info.file.path != blocks_name(key):
        raise ShapeError(f"{where}: names other files than its key's")
    return [info.file]


def _valid_record(out_dir: Path, name: str, key: str, files_of: Checker, verify: bool) -> dict | None:
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
            _check_array(out_dir, f)
            if verify and file_digest(out_dir / f.path) != f.digest:
                raise FormatError(f"{f.path}: content differs from its record's digest")
    except (FormatError, ShapeError, TypeError) as e:  # TypeError: a dtype string numpy does not know
        warn(f"{out_dir / name}: {e}; rebuilding that piece")
        return None
    return record
