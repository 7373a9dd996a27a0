"""The input formats, chosen by each shard's extension, and the parsers each is read with.

Every format ends as *documents* (a ``.txt`` line, a JSON Lines record's
text, a Parquet row's text) that go through the same cleaning as a
``.txt`` file's text (cleaning.py: ``clean_lines``), so the same
text gives the same token arrays whichever format holds it; readers.py
reads a task of each format with the parsers defined here.

* ``txt`` (any extension we do not know is text too), ``txt.gz``, ``txt.zst``
* ``jsonl``/``json``/``ndjson``, each also ``.gz``/``.zst``: one JSON object a
  line, its text in ``--text_column``
* ``parquet``: its text in ``--text_column``; no other column is read

``--ext txt,jsonl.zst,parquet`` lists several: one split may mix formats,
each file read by the longest listed extension its name ends with
(``PreprocessConfig.format_of``).

Uncompressed text and JSON Lines are cut into newline-aligned byte ranges,
Parquet into runs of row groups; a compressed file cannot be cut, so it is
one task that streams (``Decompressed``: zlib for gzip, zstandard for zstd,
members or frames concatenated or not). pyarrow is imported only for a
Parquet shard: a ``.txt`` run never pays for it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserError

CODECS = {"gz": "gzip", "gzip": "gzip", "zst": "zstd", "zstd": "zstd"}
JSONL_NAMES = ("jsonl", "json", "ndjson")
CODEC_MAGIC = {"gzip": (b"\x1f\x8b",), "zstd": (b"\x28\xb5\x2f\xfd",)}
BAD_EXAMPLES = 3  # bad records named in the warning, per task


@dataclass(frozen=True)
class Format:
    kind: str  # "text" | "jsonl" | "parquet"
    codec: str | None = None  # "gzip" | "zstd"

    @property
    def ranges(self) -> bool:
        """Cut into byte ranges (uncompressed text and JSON Lines)."""
        return self.codec is None and self.kind != "parquet"

    @property
    def records(self) -> bool:
        """Documents come from a column of records, not from lines of text."""
        return self.kind != "text"


TEXT = Format("text")


def format_of(ext: str) -> Format:
    """The format of files named ``*.<ext>``: the last part names a codec, if any, the part before it
    the container; an extension we do not know is text (users name shards .txt, .text, .th ...).
    Resolved once, by the config (``PreprocessConfig.formats``); the pipeline is handed the result."""
    parts = ext.lower().split(".")
    codec = CODECS.get(parts[-1]) if len(parts) > 1 or parts[-1] in CODECS else None
    base = parts[-2] if codec and len(parts) > 1 else (parts[-1] if not codec else "")
    if base == "parquet":
        if codec:
            raise UserError(f"--ext {ext}: Parquet compresses inside the file; name the shards *.parquet")
        return Format("parquet")
    return Format("jsonl" if base in JSONL_NAMES else "text", codec)


def formats_of(ext: str) -> dict[str, Format]:
    """The format of each extension of ``--ext`` (one, or several separated by commas); a UserError
    naming the first that no reader takes (``parquet.gz``)."""
    return {e: format_of(e) for e in ext.split(",")}


def read_key(fmt: Format, text_column: str, task_bytes: int) -> dict[str, Any] | None:
    """What reading adds to a piece's key; None for plain text (whose keys predate the formats).

    The same bytes read as another format, or another column, are other
    text. A compressed text stream is cut for giant lines inside the worker
    (ranges.cut_stream) where the scan cannot see: the task size counts.
    """
    if fmt == TEXT:
        return None
    key: dict[str, Any] = {"kind": fmt.kind, "codec": fmt.codec}
    if fmt.records:
        key["text_column"] = text_column
    if fmt.kind == "text":
        key["task_bytes"] = task_bytes
    return key


class Decompressed:
    """The decompressed bytes of a gzip or zstd file (members or frames one after another), read as
    a stream in bounded steps. A truncated or damaged file yields every byte decoded before the
    damage, then ends, with ``damage`` saying why (the caller counts it); ``garbage``: the damage
    was met before any byte decoded, and was not a truncation (not a compressed file at all)."""

    IN_BYTES = 64 << 10  # compressed bytes fed at a time: bounds each step's output for real text

    def __init__(self, raw: Any, codec: str):
        self.raw, self.codec = raw, codec
        self.pending = bytearray()
        self.out = 0  # decompressed bytes handed out
        self.damage: str | None = None
        self.garbage = False
        self.ended = False
        self.dec, self.fed = self._new(), False

    def _new(self) -> Any:
        if self.codec == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def _fill(self, n: int) -> None:
        while len(self.pending) < n and not self.ended:
            data = self.raw.read(self.IN_BYTES)
            if not data:
                self.ended = True
                if self.fed:  # a member or frame began and never ended
                    self._damaged("truncated: the file ends inside compressed data", garbage=False)
                return
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        import zstandard

        while data and not self.ended:
            try:
                self.pending += self.dec.decompress(data)
            except (zlib.error, zstandard.ZstdError) as e:
                self._damaged(f"damaged compressed data ({e})")
                return
            self.fed = True
            if not self.dec.eof:
                return
            data = self.dec.unused_data
            self.dec, self.fed = self._new(), False
            if data and not any(data.startswith(m) for m in CODEC_MAGIC[self.codec]):
                self._damaged(f"{len(data)}+ bytes after the last complete {self.codec} member that are not "
                              f"{self.codec} data")

    def _damaged(self, why: str, garbage: bool = True) -> None:
        self.damage, self.ended = why, True
        self.garbage = garbage and self.out + len(self.pending) == 0

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self.pending[:n])
        del self.pending[:n]
        self.out += len(out)
        return out

    def readinto(self, buf: bytearray) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class RecordError(ValueError):
    """A record that holds no usable text: counted, named in a warning, never a crash."""


def record_text(line: bytes | str, column: str) -> str:
    """The text of one JSON Lines record, or RecordError saying why there is none."""
    try:
        record = json.loads(line)
    except ValueError as e:  # JSONDecodeError, and UnicodeDecodeError on bytes
        raise RecordError(f"not valid JSON ({str(e).split(':')[0]})") from None
    except RecursionError:
        raise RecordError("not valid JSON (nested too deep)") from None
    if not isinstance(record, dict):
        raise RecordError(f"a JSON {type(record).__name__}, not an object")
    if column not in record:
        raise RecordError(f"no {column!r} field")
    text = record[column]
    if not isinstance(text, str):
        raise RecordError(f"{column!r} is {'null' if text is None else type(text).__name__}, not a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape ("\ud800"): not a character; replaced like invalid UTF-8
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def parquet_column(path: str | Path, column: str) -> tuple[Any, str | None]:
    """(the open ParquetFile, why ``column`` cannot be read as text or None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(str(path))
    schema = pf.schema_arrow
    if column not in schema.names:
        return pf, f"no column {column!r} (columns: {', '.join(schema.names[:8])})"
    t = schema.field(column).type
    if pa.types.is_dictionary(t):  # dictionary-encoded strings read as strings
        t = t.value_type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
        return pf, f"column {column!r} is {t}, not a string"
    return pf, None


def parquet_texts(pf: Any, column: str, row_groups: list[int], batch_rows: int = 1024) -> Iterator[list[str | None]]:
    """The ``column`` values of these row groups, in batches; no other column is read. Values that are
    not valid UTF-8 (Parquet does not check) are decoded with U+FFFD, as in a ``.txt`` file."""
    import pyarrow as pa

    for batch in pf.iter_batches(batch_size=batch_rows, row_groups=row_groups, columns=[column], use_threads=False):
        col = batch.column(0)
        try:
            yield col.to_pylist()
        except UnicodeDecodeError:
            raw = col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
            yield [None if b is None else b.decode("utf-8", "replace") for b in raw.cast(pa.binary()).to_pylist()]
