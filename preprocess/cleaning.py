"""The cleaning every document goes through, whatever its format, and the held-out split's choice.

The original builder's rule (universal newlines, ``str.strip``, drop empty
lines), kept so that the same text gives the same ids; plus the segments
of a line cut across tasks (scan.py), which must join back into the line
the rule gives.
"""

from __future__ import annotations

import xxhash

CLEANING = {
    "newlines": ["\\n", "\\r\\n", "\\r"],
    "strip": "str.strip",
    "drop_empty": True,
    "drop_lines_without_tokens": True,
    "invalid_utf8": "replace with U+FFFD",
    "long_lines": "cut before a space, else at a character, where no newline comes within 2 x --task_size_mb; "
                  "encoded in pieces of <= 65536 characters cut the same way",
}


def clean_lines(text: str, space_token: str | None = None) -> list[str]:
    """The original builder's cleaning: universal newlines, ``str.strip``, drop empty lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = [s for s in (line.strip() for line in lines) if s]
    if space_token:
        out = [s.replace(" ", space_token) for s in out]
    return out


def clean_segments(text: str, space_token: str | None, starts_open: bool, ends_open: bool) -> list[str]:
    """``clean_lines`` of a task's text, where the text may begin or end inside a line (ranges.py).

    A segment that continues the previous task's line keeps its leading
    spaces, one the next task continues keeps its trailing ones, and both
    are kept even when empty (the first closes the open line, the last keeps
    it open): joined back, the segments of a line are the line ``clean_lines``
    gives. ``space_token`` as there.
    """
    parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    last, out = len(parts) - 1, []
    for k, part in enumerate(parts):
        head, tail = k == 0 and starts_open, k == last and ends_open
        cleaned = part if head and tail else part.rstrip() if head else part.lstrip() if tail else part.strip()
        if cleaned or head or tail:
            out.append(cleaned.replace(" ", space_token) if space_token else cleaned)
    return out


def held_out(text: str, fraction: float, seed: int) -> bool:
    """Whether a document (its cleaned lines, joined by newlines) is in the held-out split: a seeded
    hash of its content, so no file order, worker or node count can move it."""
    return xxhash.xxh64_intdigest(text.encode("utf-8", errors="surrogatepass"), seed) < fraction * 2.0**64


def _taken(lines: list[str], starts_open: bool, ends_open: bool, select: tuple[float, int, bool]) -> list[bool]:
    """Whether each line of a text task is in the side of the held-out split ``select`` names."""
    fraction, seed, side = select
    last = len(lines) - 1
    spans = [(i == 0 and starts_open) or (i == last and ends_open) for i in range(len(lines))]
    return [(not side) if span else held_out(line, fraction, seed) == side for line, span in zip(lines, spans)]


def text_lines(text: str, space: str | None, starts_open: bool, ends_open: bool,
               select: tuple[float, int, bool] | None, read_bytes: int) -> tuple[list[str], bool, bool, int]:
    """A text task's lines for encoding (``clean_segments``) in one side of a held-out split
    (``select``: fraction, seed, whether this is the held-out side), their open flags, and the bytes
    of text they stand for (the manifest's ``text_bytes``).

    A ``.txt`` line is a document; a segment of a line cut across tasks (a giant line) cannot be
    hashed whole, so such lines stay in training. Text bytes: ``read_bytes`` (all the text read)
    without a held-out split; with one, the UTF-8 bytes of each line this side took, as cleaned
    (before spaces become the space token ``space``), plus its newline.
    """
    if select is None:
        return clean_segments(text, space, starts_open, ends_open), starts_open, ends_open, read_bytes
    plain = clean_segments(text, None, starts_open, ends_open)
    lines = [s.replace(" ", space) for s in plain] if space else plain  # = clean_segments(text, space, ...)
    taken = _taken(lines, starts_open, ends_open, select)
    n = sum(len(p.encode("utf-8")) + 1 for p, t in zip(plain, taken) if t)
    side = select[2]
    return [x for x, t in zip(lines, taken) if t], starts_open and not side, ends_open and not side, n


def decode_bytes(raw: bytes) -> tuple[str, int]:
    """UTF-8 text and how many invalid byte sequences were replaced with U+FFFD."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        # U+FFFD genuinely in the input is EF BF BD; every other one is a replacement.
        return text, text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")
