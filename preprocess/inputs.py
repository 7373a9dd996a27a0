"""The input shards: every ``*.<ext>`` file of the text dirs, each checked before any work.

A shard that is not what ``--ext`` says (a gzip file named .txt, pretty
JSON named .jsonl, JSON Lines that a bare ``--ext zst`` would read as
text, a FIFO, a name that is not UTF-8) is a one-line error
naming it and the fix, found here in a read of its head, not a run of
garbage or of bad records.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path

from common.check import input_dirs, list_inputs, listed_ext
from common.errors import UserError
from preprocess.formats import CODEC_MAGIC, CODECS, JSONL_NAMES, Decompressed, Format, parquet_column

SNIFF_RECORDS = 64 << 10  # bytes of (decompressed) text a shard's check reads


def list_shards(input_dir: str, formats: dict[str, Format], flag: str, recursive: bool, column: str, *,
                has_recursive: bool) -> list[tuple[str, Path, Format]]:
    """(name, path, format) of every file directly in the dir or dirs of ``input_dir`` (or below them,
    ``recursive``) whose name ends with an extension of ``formats`` (--ext, resolved by the config),
    sorted by name (common/check.py: ``list_inputs``), each checked readable and of the format of the
    longest extension its name ends with (so a split may mix formats). ``has_recursive``: the command
    has a ``--recursive`` flag, which the no-shard hint may suggest."""
    ext = ",".join(formats)
    dirs = input_dirs(input_dir)
    for d in dirs:
        if not d.exists():
            raise UserError(f"{flag} {d}: no such directory")
        if not d.is_dir():
            raise UserError(f"{flag} {d}: not a directory")
    shards = list_inputs(dirs, ext, recursive)
    bases = [dirs[0]] * len(shards) if len(dirs) == 1 else [next(d for d in dirs if p.is_relative_to(d))
                                                              for _, p in shards]
    for d in dirs:
        if d not in bases:
            raise UserError(f"{flag} {d}: no {_pattern(ext)} files{_empty_hint(d, ext, recursive, has_recursive)}")
    listed = [listed_ext(p.name, ext) for _, p in shards]
    fmts = [formats[e] for e in listed]
    column_states = [check_shard(p, str(base), base, fmt, column, e)
                     for (_, p), base, fmt, e in zip(shards, bases, fmts, listed)]
    if any(f.records for f in fmts) and "" not in column_states and any(column_states):
        k = next(i for i, why in enumerate(column_states) if why)
        records = ",".join(e for e, f in formats.items() if f.records)
        raise UserError(f"{flag} {input_dir}: no {_pattern(records)} file has its text in {column!r} (e.g. "
                        f"{shards[k][1]}: {column_states[k]}); pass the field or column that holds the text with "
                        "--text_column")
    return [(name, p, fmt) for (name, p), fmt in zip(shards, fmts)]


def _pattern(ext: str) -> str:
    """``*.txt``, or ``*.{parquet,txt}`` for several extensions."""
    return f"*.{ext}" if "," not in ext else f"*.{{{ext}}}"


HINT_FILES = 10_000  # files the no-shard hint looks at: a --train_dir of / must not walk the whole disk


def _empty_hint(d: Path, ext: str, recursive: bool, has_recursive: bool) -> str:
    """Why ``d`` has no ``*.<ext>`` file, and what would read its files: ``--recursive`` only where
    such files are in its subdirectories (and the command has the flag), else the extensions its files
    have, with the ``--ext`` that reads them."""
    top: list[Path] = []
    below: list[Path] = []
    for root, _, files in os.walk(d):  # links to dirs are not entered, as in the listing
        (top if root == str(d) else below).extend(Path(root) / f for f in files)
        if len(top) + len(below) >= HINT_FILES:
            break
    nested = None if recursive else next((p for p in below if listed_ext(p.name, ext)), None)
    if nested is not None:
        sub = nested.relative_to(d).parts[0]
        fix = ("add --recursive to read them" if has_recursive
               else "this command reads only the files directly in the dir: pass that subdirectory")
        return f" (only in its subdirectories, e.g. {sub}/: {fix})"
    seen = top + below if recursive else top
    where = "it has"
    if not seen and below:  # files only in subdirectories, none of them *.<ext>
        seen, where = below, f"only its subdirectories have files, e.g. {below[0].relative_to(d).parts[0]}/,"
    if not seen:
        return " (it is empty)"
    counts = Counter(e for p in seen if (e := _extension(p))).most_common(5)
    if not counts:
        return f" ({where} files without an extension, e.g. {seen[0].name}: name the shards *.txt or the like)"
    named = [f"{n} *.{e}" for e, n in counts]
    found = f"{', '.join(named[:-1])} and {named[-1]}" if len(named) > 1 else named[0]
    one = len(seen) == 1
    flags = f"--ext {','.join(sorted(e for e, _ in counts))}"
    if seen is below:
        flags = f"--recursive {flags}" if has_recursive else f"a subdirectory as the dir, with {flags}"
    return (f" ({where} {found} file{'' if one else 's'}: to read {'it' if one else 'them'}, pass {flags}"
            f"{', leaving out any that are not shards' if len(counts) > 1 else ''})")


def _extension(p: Path) -> str:
    """``txt``, or ``jsonl.gz`` where the last suffix names a codec: what --ext would take; "" for a
    name without one (``README``, ``.DS_Store``)."""
    tail = p.suffixes[-2:] if len(p.suffixes) > 1 and p.suffix.lstrip(".").lower() in CODECS else p.suffixes[-1:]
    return "".join(tail).lstrip(".")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_shard(p: Path, input_dir: str, base: Path, fmt: Format, column: str, listed: str) -> str | None:
    """UserError unless ``p`` is a readable regular file with a UTF-8 name, of the format ``fmt`` (that
    of ``listed``, the extension of --ext it was listed by); for records, why its head holds no ``column``
    text ("" if it does; None: no record to tell).

    A FIFO or a device would hang the run or feed it endless bytes; a name
    that is not UTF-8 cannot be written to the manifest (JSON is UTF-8).
    """
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:
        name = str(p.relative_to(base))
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{input_dir}: the file name {os.fsencode(name)!r} is not valid UTF-8; rename it "
                            "(e.g. convmv -f latin1 -t utf8 --notest) or move it out of the dir") from None
    try:
        mode = os.stat(p).st_mode  # follows symlinks: a link to a regular file is a shard
        if not stat.S_ISREG(mode):
            raise UserError(f"{p}: {_kind(mode)}, not a regular file; move it out of {input_dir}")
        fd = os.open(p, os.O_RDONLY)
        try:
            head = os.read(fd, SNIFF_BYTES)
        finally:
            os.close(fd)
    except OSError as e:
        raise UserError(f"{p}: not readable ({e.strerror}); fix it or move it out of {input_dir}") from None
    if reads := _records_read_as_text(p.name, fmt, listed):
        raise UserError(f"{p}: JSON Lines (*.{reads}), but --ext {listed} reads it as {fmt.codec}-compressed text: "
                        f"its raw JSON would be tokenized, --text_column unused. Read it with --ext {reads} (listed "
                        f"with {listed} if compressed text is there too: --ext {listed},{reads}), or move it out "
                        f"of {input_dir}")
    if fmt.ranges:
        what = not_text(head)
        if what:
            raise UserError(f"{p}: {what}, not text: it would be tokenized as garbage. "
                            f"{_reader_hint(p, what)}or move it out of {input_dir}")
    what, column_state = sniff(p, fmt, column)
    if what:
        raise UserError(f"{p}: {what}. {_reader_hint(p, what)}or move it out of {input_dir}")
    return column_state


def _records_read_as_text(name: str, fmt: Format, listed: str) -> str | None:
    """``jsonl.zst`` where a file so named was listed by a bare codec (``--ext zst``), which reads it as
    compressed text: the extension that reads it as JSON Lines, in its name's spelling; else None.
    (A ``.parquet.zst`` read so is refused by its decompressed head: a Parquet file, not text.)"""
    if fmt.kind != "text" or listed.lower() not in CODECS:
        return None
    inner = name[: -len(listed) - 1].rpartition(".")[2]
    return f"{inner}.{listed}" if "." in name[: -len(listed) - 1] and inner.lower() in JSONL_NAMES else None


def _reader_hint(p: Path, what: str) -> str:
    """Which ``--ext`` reads a file whose bytes say ``what`` it is, if one does."""
    parts = p.name.split(".")[1:] or ["txt"]
    last, base = parts[-1], (parts[-2] if len(parts) > 1 else "txt")
    for codec, suffix in (("gzip", "gz"), ("zstd", "zst")):
        if what.startswith(f"{codec}-compressed"):
            return f"If it is compressed text, name it *.{last}.{suffix} and read it with --ext {last}.{suffix}; "
    if what.startswith("a Parquet file"):
        return "Name it *.parquet and read it with --ext parquet; "
    if what.startswith("not gzip") or what.startswith("not zstd"):
        return f"If it is not compressed, name it *.{base} and read it with --ext {base}; "
    if what.startswith("not JSON Lines"):
        return "Convert it to JSON Lines, one object a line (e.g. jq -c '.[]' in.json > out.jsonl), "
    if what.startswith("cannot be"):
        return "Replace it with an intact copy "
    return "Convert it to UTF-8 text "


SNIFF_BYTES = 4096
MAGIC = ((b"\x1f\x8b", "gzip-compressed"), (b"\x28\xb5\x2f\xfd", "zstd-compressed"), (b"PAR1", "a Parquet file"),
         (b"BZh", "bzip2-compressed"), (b"\xfd7zXZ\x00", "xz-compressed"), (b"PK\x03\x04", "a zip archive"),
         (b"\xff\xfe", "UTF-16 text"), (b"\xfe\xff", "UTF-16 text"))


def not_text(head: bytes) -> str | None:
    """What the first bytes of a file say it is, if not text. Text that decodes as UTF-8 (a character
    cut by the sniff's end aside) and has no NUL is text, whatever it starts with ("BZh...", "PAR1 ...");
    otherwise a magic number names the format, and NUL bytes (text has none) mark binary. Invalid
    UTF-8 in what is otherwise text is left to the run (replaced and counted)."""
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return None
        except UnicodeDecodeError as e:
            if e.start >= len(head) - 3:  # a character cut by the end of the sniff
                return None
    for magic, what in MAGIC:
        if head.startswith(magic):
            return what
    if head.count(0) > len(head) // 100:
        return "binary data (NUL bytes)"
    return None


def sniff(path: Path, fmt: Format, column: str) -> tuple[str | None, str | None]:
    """(what is wrong with the whole file, why its head holds no ``column`` text: "" if it does, None
    if there is no record to tell), from its head.

    Called before any work, so a shard that is not what ``--ext`` says is a
    one-line error, not a run of garbage or of bad records.
    """
    if fmt.kind == "parquet":
        return _sniff_parquet(path, column)
    if fmt.kind == "text" and not fmt.codec:  # its head was checked by check_shard: nothing more to read
        return None, None
    with open(path, "rb") as f:
        if fmt.codec:
            magic = f.read(8)
            if magic and not any(magic.startswith(m) for m in CODEC_MAGIC[fmt.codec]):
                return f"not {fmt.codec}-compressed, as --ext says", None
            f.seek(0)
            stream = Decompressed(f, fmt.codec)
            head = stream.read(SNIFF_RECORDS)
            if stream.garbage:  # damage met later is the run's to count, with what came before kept
                return f"cannot be decompressed: {stream.damage}", None
        else:
            head = f.read(SNIFF_RECORDS)
    if fmt.kind == "jsonl":
        return _sniff_jsonl(head, column)
    if fmt.codec and (what := not_text(head[:SNIFF_BYTES])):
        return f"{what} once decompressed, not text", None
    return None, None


def _sniff_parquet(path: Path, column: str) -> tuple[str | None, str | None]:
    try:
        _, why = parquet_column(path, column)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError ...: the file cannot be opened
        return f"cannot be opened as Parquet ({' '.join(str(e).split())[:120]})", None
    return None, why or ""


def _sniff_jsonl(head: bytes, column: str) -> tuple[str | None, str | None]:
    lines = [x.strip() for x in head.removeprefix(b"\xef\xbb\xbf").split(b"\n")]
    if len(lines) > 1:
        lines = lines[:-1]  # the last may be cut by the sniff's end
    lines = [x for x in lines if x]
    if not lines:
        return None, None
    if lines[0] in (b"[", b"{"):
        return "not JSON Lines (one object a line): it looks like pretty-printed JSON", None
    fields: list[str] = []
    for k, line in enumerate(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a bad record: counted when read
        if not isinstance(record, dict):
            if k == 0:
                return f"not JSON Lines of objects: its first record is a JSON {type(record).__name__}", None
            continue
        if column in record:
            return None, ""
        fields = fields or list(record)
    return None, f"no {column!r} field in its first records (fields: {', '.join(fields[:8])})" if fields else None
