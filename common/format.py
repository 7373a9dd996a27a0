"""The on-disk format of a preprocessed split, defined once for both stages.

A cache dir holds one folder per split (``train``, ``validation``)::

    <cache>/.lock                      flock()ed by the run that writes the cache
    <cache>/<split>/manifest.json      the commit point: present => the split is complete
    <cache>/<split>/pieces/<K>.tokens.npy   n_tokens   x uint16|uint32  (little-endian)
    <cache>/<split>/pieces/<K>.lines.npy    (n_lines+1) x int64
    <cache>/<split>/pieces/<K>.json         the piece's record (completion marker)
    <cache>/<split>/blocks/<B>.blocks.npy   (n_blocks, 2) x int64
    <cache>/<split>/blocks/<B>.json         the block index's record (completion marker)

A *piece* is a run of consecutive input files (shards, in sorted order)
tokenized into one stream, as if they were one file: a file of at least
half ``--task_size_mb`` is a piece of its own, small files are grouped
(preprocess/plan.py: ``group_shards``), so the number of files here and
of memory maps in training grows with the bytes of text, not the number of
input files. ``K`` is the piece key: a hash of its files' digests in order,
the tokenizer identity, the cleaning/encoding parameters and
``FORMAT_VERSION``. ``B`` adds ``max_seq_length`` and the packing rule to
``K``. Identical key => identical content, so a file whose name matches is
reused and anything else is rebuilt.

Rules tying the files together (``n`` = lines of the piece after cleaning):

* ``tokens`` is the token stream of the piece: every cleaned line's ids
  followed by one separator id (``tokenizer.separator_id`` in the manifest),
  file after file.
* ``lines[0] == 0``, ``lines[n] == n_tokens``, strictly increasing; line ``i``
  is ``tokens[lines[i] : lines[i+1] - 1]`` (its separator dropped).
* a block row ``(s, e)`` is the FULL-SENTENCES block
  ``[bos] + tokens[s:e] + [eos]`` with ``e - s <= max_seq_length - 2``; a
  block holds whole consecutive lines with their separators between them, or
  one piece of a line longer than a block. Blocks cross file boundaries
  inside a piece, never between pieces.

All arrays are ``.npy`` so any numpy user can open them without our code.
Our writer streams the data first and writes the header last, so every
``.npy`` written here has a fixed header of ``NPY_HEADER_BYTES`` bytes.
"""

from __future__ import annotations

import ast
import functools
import math
import os
import re
import secrets
import socket
import stat
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2  # 2: pieces of several files (1: one set of arrays per file)
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
PIECES_DIR = "pieces"
LEGACY_DIRS = ("shards",)  # format 1 kept its arrays there: cleanup removes them
BLOCKS_DIR = "blocks"
TMP_MARK = ".tmp-"  # a file being written is <final name>.tmp-<writer>.<nonce> (dotted for JSON); never read
STALE_TEMP_S = 3600  # another host's temp file untouched this long belongs to a dead writer: cleanup may delete it
SPACE_TOKEN = "<_>"  # the users' explicit space token: --add_space_token writes it for every space
OFFSET_DTYPE = np.dtype("<i8")  # offsets and counts: int64, no 2**32 ceiling
# How every cache file is opened for reading. O_NONBLOCK: a FIFO where a cache file should be opens at once
# (and fails the regular-file check) instead of waiting for a writer; it changes nothing for a regular file.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
NPY_HEADER_BYTES = 128  # magic(6) + version(2) + len(2) + dict padded with spaces, ends in "\n"
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def writer_id() -> str:
    """``<host>.<pid>``: who writes a temp file, unique across the hosts sharing a cache dir (slices and
    Ray workers on other nodes have the same pids), and enough for cleanup to tell a live writer."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
    return f"{host}.{os.getpid()}"


def writer_words(writer: str) -> str:
    """``pid N on HOST`` for a ``<host>.<pid>`` that ``writer_id`` made (a lock's holder, a lease's job)."""
    host, _, pid = writer.strip().rpartition(".")
    return f"pid {pid} on {host}" if pid.isdigit() and host else f"pid {writer.strip() or 'unknown'}"


def tmp_name(final: str, dotted: bool = False) -> str:
    """The temp name a writer uses until ``os.replace`` moves the complete file to ``final``: the
    writer and a random nonce, so no two writers anywhere share one."""
    return f"{'.' if dotted else ''}{final}{TMP_MARK}{writer_id()}.{secrets.token_hex(4)}"


def temp_is_stale(path: Path, writer: str, now: float) -> bool:
    """Whether cleanup may delete the temp file ``path`` written by ``writer`` (``<host>.<pid>``): its
    process is gone (this host), or it has not been written for STALE_TEMP_S (another host: a live
    writer there keeps its file's mtime fresh)."""
    host, _, pid = writer.rpartition(".")
    if host == writer_id().rpartition(".")[0] and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
            return False  # alive (or another user's: not ours to judge)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    try:
        return now - path.stat().st_mtime > STALE_TEMP_S
    except FileNotFoundError:
        return False


class FormatError(Exception):
    """A cache file does not match what the manifest or the format promises."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (half the disk and page cache of uint32), else uint32.

    Ids run from 0 to vocab_size - 1, so a vocabulary of 65,536 still fits.
    """
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= 2**16:
        return np.dtype("<u2")
    if vocab_size <= 2**32:
        return np.dtype("<u4")
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


def tokens_name(key: str) -> str:
    return f"{PIECES_DIR}/{key}.tokens.npy"


def lines_name(key: str) -> str:
    return f"{PIECES_DIR}/{key}.lines.npy"


def piece_record_name(key: str) -> str:
    return f"{PIECES_DIR}/{key}.json"


def blocks_name(key: str) -> str:
    return f"{BLOCKS_DIR}/{key}.blocks.npy"


def blocks_record_name(key: str) -> str:
    return f"{BLOCKS_DIR}/{key}.json"


@functools.cache
def _descr(dtype: np.dtype) -> str:
    return np.lib.format.dtype_to_descr(dtype)


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A .npy v1.0 header padded to exactly NPY_HEADER_BYTES.

    Fixed size so a writer can stream the data first (count unknown) and fill
    the header in at the end without moving the data.
    """
    header = {"descr": _descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    text = repr(header).encode("latin1")
    body_len = NPY_HEADER_BYTES - len(_NPY_MAGIC) - 2
    if len(text) + 1 > body_len:
        raise ValueError(f"shape {shape} too large for a {NPY_HEADER_BYTES}-byte .npy header")
    text = text + b" " * (body_len - len(text) - 1) + b"\n"
    return _NPY_MAGIC + body_len.to_bytes(2, "little") + text


def read_npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset) of a .npy file, raising FormatError on anything else."""
    with open(path, "rb") as f:
        head = f.read(10)
        if len(head) < 10 or head[:6] != _NPY_MAGIC[:6]:
            raise FormatError(f"{path}: not a .npy file (bad magic); rebuild the cache with --overwrite_cache")
        major = head[6]
        size_bytes = 2 if major == 1 else 4
        f.seek(8)
        hlen = int.from_bytes(f.read(size_bytes), "little")
        text = f.read(hlen)
    try:
        header = ast.literal_eval(text.decode("latin1"))
        dtype, shape = np.dtype(header["descr"]), tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError) as e:
        raise FormatError(f"{path}: unreadable .npy header ({e}); rebuild the cache with --overwrite_cache") from e
    return dtype, shape, 8 + size_bytes + hlen


def npy_bytes(itemsize: int, shape: tuple[int, ...] | list[int], offset: int = NPY_HEADER_BYTES) -> int:
    """The size of a .npy file of ``shape`` x ``itemsize`` whose data starts at ``offset`` (our writer's
    fixed header by default)."""
    return offset + math.prod(shape) * itemsize


def unreadable(path: Path | str, e: OSError | None = None) -> FormatError:
    """The one line for a cache file that cannot be opened: missing (absent, or not a regular file:
    ``e`` None), or why not (a symlink loop, no permission)."""
    if e is None or isinstance(e, (FileNotFoundError, NotADirectoryError)):
        return FormatError(f"{path}: missing; rerun preprocessing to rebuild it")
    return FormatError(f"{path}: cannot be read ({e.strerror}); rerun preprocessing to rebuild it")


def check_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...], fd: int | None = None) -> int:
    """Where the data of ``path`` starts; FormatError unless it holds exactly ``shape`` x ``dtype``.

    Checks the header and that the file size is header + count x itemsize, so
    a truncated or padded file is caught before it is read. ``fd``: the file
    already open (the train stage's reader). Our writer's fixed header is
    compared as bytes, without parsing: a split is checked in one open, one
    stat and one read per array (108,000 arrays in under a second).
    """
    own = fd is None
    try:
        if own:
            fd = os.open(path, READ_FLAGS)
        st = os.fstat(fd)
        head = os.pread(fd, NPY_HEADER_BYTES, 0) if stat.S_ISREG(st.st_mode) else None
    except OSError as e:
        raise unreadable(path, e) from None
    finally:
        if own and fd is not None:
            os.close(fd)
    if head is None:
        raise unreadable(path)
    dtype, shape = np.dtype(dtype), tuple(shape)
    if head == npy_header(dtype, shape):
        offset = NPY_HEADER_BYTES
    else:
        found_dtype, found_shape, offset = read_npy_header(Path(path))
        if found_dtype != dtype or found_shape != shape:
            raise FormatError(f"{path}: expected {shape} x {dtype}, found {found_shape} x {found_dtype}")
    expected = npy_bytes(dtype.itemsize, shape, offset)
    if st.st_size != expected:
        raise FormatError(f"{path}: expected {expected} bytes, found {st.st_size} (truncated or altered)")
    return offset


def length_bins() -> np.ndarray:
    """Histogram bin edges for line and block lengths in tokens: 0, 1, 2, 4, ... 2**20, inf."""
    return np.array([0] + [2**i for i in range(21)] + [np.iinfo(np.int64).max], dtype=np.int64)


def length_histogram(lengths: np.ndarray) -> list[int]:
    """Counts of ``lengths`` per ``length_bins()`` bin; a list so it goes straight into JSON."""
    edges = length_bins()
    bins = np.searchsorted(edges[1:-1], np.asarray(lengths, dtype=np.int64), side="right")
    return [int(c) for c in np.bincount(bins, minlength=len(edges) - 1)]
