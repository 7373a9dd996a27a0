"""What ``mlm-train-tokenizer`` refuses, each in one ``error:`` line: the flags and the output dir before any
reading (``check_args``), the text read (``check_text``: not UTF-8), the sample against the vocabulary asked
(``check_sample``)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from common.errors import UserError
from preprocess.encoding import ENCODING_SHARE
from preprocess.sample import CorpusFiles, Drawn
from preprocess.tokenizer_families import FAMILIES, FamilyOptions

GB = 10**9
BYTES_PER_ID = 64  # at least this much text a vocabulary entry, or the trainer stops short of the size asked
MIN_VOCAB = 16  # ids: the special tokens and a few more


def _check_output_dir(out: Path) -> None:
    """``--output_dir`` is a new or empty dir, in a dir this process can write (the tokenizer is written
    beside it, then renamed): refused before the sample is read, not after."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir {out} is a file, not a dir; give a new dir's path")
    if out.exists() and any(out.iterdir()):
        # Files of an earlier tokenizer (a tokenizer.json twin, say) would be loaded instead of the new one.
        raise UserError(f"--output_dir {out} is not empty; give a new dir or delete it first")
    base = out.absolute().parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UserError(f"--output_dir {out}: {base} is a file, not a dir; give a path under a dir")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"--output_dir {out}: {base} cannot be written (read-only or no permission); "
                        "give a dir you can write")


def check_args(args: argparse.Namespace) -> None:
    """Every refusal that needs no reading, before any reading."""
    family = FAMILIES[args.type]
    _check_output_dir(Path(args.output_dir))
    if args.vocab_size is not None and args.vocab_size < MIN_VOCAB:
        raise UserError(f"--vocab_size {args.vocab_size}: too small for a vocabulary (at least {MIN_VOCAB})")
    if family.needs_vocab_size and args.vocab_size is None:
        raise UserError(f"--vocab_size is required for --type {args.type}")
    if args.vocab_multiple < 1:
        raise UserError(f"--vocab_multiple {args.vocab_multiple}: must be at least 1 (1: as given)")
    if not 0 < args.sample_bytes < math.inf:
        raise UserError(f"--sample_bytes {args.sample_bytes:g}: must be a positive number of GB")
    FamilyOptions(args.vocab_size, args.num_workers, args.model_type, args.character_coverage,  # its own checks
                  args.add_space_token, args.min_frequency)
    if args.vocab_size and args.sample_bytes * GB < args.vocab_size * BYTES_PER_ID:
        raise UserError(f"--sample_bytes {args.sample_bytes:g} GB is too small for --vocab_size {args.vocab_size:,}: "
                        f"give at least {args.vocab_size * BYTES_PER_ID / GB:g} GB ({BYTES_PER_ID} bytes of text an id)")


def check_text(files: dict[str, CorpusFiles], drawn: dict[str, Drawn]) -> None:
    """Refuse shards that are mostly not UTF-8 (random bytes or a legacy encoding, TIS-620 Thai, under a
    .txt name), where mlm-preprocess warns: the tokenizer would learn U+FFFD and shreds of bytes as its
    vocabulary, and looks no different for it. Records without text (bad JSON Lines lines) are skipped and
    counted, as mlm-preprocess does."""
    found, bad = [], {}
    for n, d in drawn.items():
        where = {name: path for name, path, _ in files[n].shards}
        for name, (nbytes, invalid, skipped) in d.faults.items():
            if skipped:
                bad[where[name]] = skipped
            if invalid > ENCODING_SHARE * max(nbytes, 1):
                found.append(f"{where[name]}: {invalid:,} invalid UTF-8 sequences in {nbytes:,} bytes read")
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise UserError(f"--train_dir: text that is not UTF-8: {'; '.join(found[:3])}{more}. A legacy encoding "
                        "(TIS-620 Thai, CP1252) converts with iconv -f ENCODING -t UTF-8 (mlm-preprocess guesses "
                        "which); binary data goes out of the dir. No tokenizer was written")
    if bad:
        named = ", ".join(f"{p} ({c:,})" for p, c in list(bad.items())[:3]) + (" ..." if len(bad) > 3 else "")
        print(f"note: {sum(bad.values()):,} records without usable text skipped, as mlm-preprocess skips them "
              f"(malformed JSON Lines, no --text_column string, a damaged stream): {named}", file=sys.stderr)


def check_sample(args: argparse.Namespace, training: list[str], vocab: int | None) -> None:
    """Refuse a sample the vocabulary (``vocab``: --vocab_size rounded) cannot be trained on: too little text
    for its size (the corpus is smaller than the sample asked), or, for spm or unigram covering every
    character, more characters than ids."""
    if not vocab:
        return
    size = sum(len(s.encode("utf-8", errors="surrogatepass")) for s in training)
    if size < vocab * BYTES_PER_ID:
        most = size // BYTES_PER_ID
        fix = f"lower --vocab_size to at most {most:,}, or add text" if most >= MIN_VOCAB else (
            f"add text: the smallest vocabulary, {MIN_VOCAB} ids, needs {MIN_VOCAB * BYTES_PER_ID:,} bytes")
        raise UserError(f"the corpus gives {size:,} bytes of text, too little for a vocabulary of {vocab:,} ids "
                        f"(at least {BYTES_PER_ID} bytes an id): {fix}")
    if args.type in ("spm", "unigram") and args.character_coverage >= 1.0:
        chars = len(set().union(*map(set, training)))
        specials = 6 if args.type == "spm" else 5  # spm's <_>
        if chars + specials > vocab:
            raise UserError(f"--character_coverage 1 keeps all {chars:,} characters of the sample, more than a "
                            f"vocabulary of {vocab:,} ids holds with the {specials} special tokens: raise "
                            "--vocab_size, or lower --character_coverage")
