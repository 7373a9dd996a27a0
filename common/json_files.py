"""JSON files that are either wholly old or wholly new, and one error for any that cannot be read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common.format import FormatError, tmp_name


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
