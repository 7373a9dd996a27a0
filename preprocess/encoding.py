"""Text that is not UTF-8: how much of it marks a shard as being in another encoding, and which one.

Shared by mlm-preprocess (preprocess/commit.py names such shards after a build) and mlm-train-tokenizer
(preprocess/tokenizer_checks.py refuses them before training), so both draw the line at the same share.
"""

from __future__ import annotations

from pathlib import Path

from preprocess.formats import Format

ENCODING_SHARE = 0.01  # invalid UTF-8 sequences per stored byte above which a shard is likely in another encoding
SNIFF_BYTES = 1 << 16
TIS620_THAI = set(range(0xA1, 0xDB)) | set(range(0xDF, 0xFC))  # TIS-620's Thai letters, vowels, digits


def guess_encoding(path: Path, fmt: Format) -> str | None:
    """A guess, from the bytes that are not UTF-8 in the first 64 KB, of the 8-bit encoding a shard is in:
    TIS-620 when nearly all of them lie in its Thai range, else CP1252; None for a compressed or
    Parquet shard (its stored bytes say nothing) or a head that is valid UTF-8."""
    if not fmt.ranges:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None
    bad = [ord(c) - 0xDC00 for c in head.decode("utf-8", errors="surrogateescape") if "\udc80" <= c <= "\udcff"]
    if not bad:
        return None
    return "TIS-620" if sum(b in TIS620_THAI for b in bad) >= 0.9 * len(bad) else "CP1252"
