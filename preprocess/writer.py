"""Stream an array of unknown length into a ``.npy`` file that appears only when complete.

Data goes to a temp name behind a fixed-size header; ``commit`` fills the
header in, fsyncs and renames into place. A crash before ``commit`` leaves
only a temp file, which the next run deletes: a file under its final name
is always whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.format import NPY_HEADER_BYTES, npy_header, tmp_name
from common.hashing import file_digest
from common.manifest import FileInfo


class NpyStreamWriter:
    def __init__(self, final: Path, dtype: np.dtype, row_shape: tuple[int, ...] = ()):
        self.final = Path(final)
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        self.rows = 0
        self.tmp = self.final.with_name(tmp_name(self.final.name))
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.tmp, "wb")
        try:
            self.f.write(b"\0" * NPY_HEADER_BYTES)
        except BaseException:
            self.abort()
            raise

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape[1:] != self.row_shape:
            raise ValueError(f"{self.final}: rows of shape {arr.shape[1:]}, expected {self.row_shape}")
        try:
            self.f.write(arr.data)
        except OSError as e:  # a full disk: say where
            raise OSError(e.errno, e.strerror, str(self.tmp.parent)) from None
        self.rows += len(arr)

    def commit(self, rel_to: Path) -> FileInfo:
        """Write the header, fsync, move into place; the file's record, path relative to ``rel_to``."""
        shape = (self.rows, *self.row_shape)
        try:
            self.f.seek(0)
            self.f.write(npy_header(self.dtype, shape))
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.final)
        except BaseException:
            self.abort()
            raise
        return FileInfo(
            path=str(self.final.relative_to(rel_to)),
            bytes=self.final.stat().st_size,
            digest=file_digest(self.final),
            dtype=self.dtype.name,
            shape=list(shape),
        )

    def abort(self) -> None:
        """Remove the temp file whatever closing it does (on a full disk the close's flush fails too)."""
        try:
            if not self.f.closed:
                self.f.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


def write_array(final: Path, arr: np.ndarray, rel_to: Path) -> FileInfo:
    w = NpyStreamWriter(final, arr.dtype, arr.shape[1:])
    try:
        w.append(arr)
    except BaseException:
        w.abort()
        raise
    return w.commit(rel_to)
