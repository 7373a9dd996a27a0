"""``mlm-train-tokenizer`` / ``python -m preprocess.train_tokenizer``: train a tokenizer on a sample of the corpus.

It reads what ``mlm-preprocess`` reads (several dirs, ``--recursive``, every
format of ``--ext``, ``--text_column``, named corpora ``--train_dir
NAME=DIR``) through the same readers and cleaning, draws a seeded sample of
``--sample_bytes`` uniformly over every shard and every part of every shard
(preprocess/sample.py; named corpora in the shares ``--mixture`` or
``--mixture_alpha`` give, as ``mlm-train`` reads them), and trains one
family on it (preprocess/tokenizer_families.py): byte-level ``bpe``,
``wordpiece``, ``unigram``, SentencePiece ``spm`` (the users' Thai layout
with ``--add_space_token``), or the Thai word-level ``newmm`` and
``syllable``. The output dir loads with ``AutoTokenizer`` where the family
allows it and with ``--tokenizer_type`` as printed; ``training.json`` beside
it records what it was trained from; ``tokenizer_report.json`` how it
tokenizes a held-out part of the sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from common.check import refuse_shared_corpora
from common.cli import exit_without_teardown, parse_args, run_command
from common.config import normalise_ext
from common.corpora import parse_named
from common.errors import UserError
from common.fast_tokenizer import TokenizerDirError, read_fast_dir
from common.json_files import write_json_atomic
from common.mixture import parse_mixture, weights
from common.segmenters import SEGMENTERS
from common.tokenizer import TOKENIZER_TYPES, TRAINING_FILE, TokenizerError, load_tokenizer
from common.word_level import read_word_dir
from preprocess.config import available_cores
from preprocess.encoder import bounded_pieces
from preprocess.formats import formats_of
from preprocess.inputs import list_shards
from preprocess.progress import Ticker
from preprocess.sample import CorpusFiles, Drawn, Readers, balance, draw, held_out, reading_bar, sample_digest, targets
from preprocess.tokenizer_checks import GB, check_args, check_sample, check_text
from preprocess.tokenizer_families import FAMILIES, SPM_THREADS, FamilyOptions, round_vocab
from preprocess.tokenizer_output import remove_leftovers, writing
from preprocess.word_counts import with_segmented
from preprocess.workers import WorkerDied

HELD_OUT = 0.02  # of the sample's lines, for the report: the tokenizer never trains on them
HELD_OUT_BYTES = 1 << 20  # at most, of a corpus's text: plenty for the report's figures
READ_PER_READER = 128 << 20  # bytes of the corpora a reader process must have to read to pay for itself
REPORT_FILE = "tokenizer_report.json"


def held_out_share(text_bytes: int) -> float:
    """The share of a corpus's sampled lines held out for the report: 2%, at most about 1 MiB of its text.
    At the default 1 GB sample, 2% was 20 MB: about 11 s for the report to segment with newmm (1.9 MB/s
    on the bench's English and Thai, in one process), and 20 MB the tokenizer never trained on."""
    return min(HELD_OUT, HELD_OUT_BYTES / max(text_bytes, 1))


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, but for a flag that has none (required, or worked out at run time:
    its help says how)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None or action.required else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlm-train-tokenizer", description=__doc__.split("\n\n")[0],
                                formatter_class=_Defaults)
    p.add_argument("--type", required=True, choices=tuple(FAMILIES), help="the family to train")
    p.add_argument("--train_dir", required=True, action="append",
                   help="dir of text shards, as mlm-preprocess takes it: several comma-separated or the flag "
                   "repeated; named corpora as NAME=DIR entries (wiki=data/wiki,news=data/news)")
    p.add_argument("--ext", default="txt", help="the shards' extensions, as mlm-preprocess takes them: txt, txt.gz, "
                   "txt.zst, jsonl(.gz/.zst), json, ndjson, parquet; several comma-separated")
    p.add_argument("--text_column", default="text", help="JSON Lines field or Parquet column holding the text")
    p.add_argument("--recursive", action="store_true", help="read the subdirectories of each dir too")
    p.add_argument("--output_dir", required=True, help="where the tokenizer is saved (new or empty)")
    p.add_argument("--vocab_size", type=int, default=None,
                   help="vocabulary size (bpe, wordpiece, unigram, spm: required; word-level: a cap after "
                   "--min_frequency); rounded up to a multiple of --vocab_multiple")
    p.add_argument("--vocab_multiple", type=int, default=64,
                   help="round --vocab_size up to a multiple of this (64: an embedding matrix GPU tensor cores "
                   "fill; 1: as given)")
    p.add_argument("--sample_bytes", type=float, default=1.0,
                   help="GB (10^9 bytes) of text to train on, drawn at random over the whole corpus; the whole "
                   "corpus when it is smaller")
    p.add_argument("--seed", type=int, default=42, help="seed of the sample: the same corpus and seed give the "
                   "same sample whatever --num_workers")
    p.add_argument("--mixture", default=None, help="named corpora: each one's share of the sample, NAME=W,... "
                   "(normalised), as mlm-train --mixture")
    p.add_argument("--mixture_alpha", type=float, default=None,
                   help="named corpora: each weighs its share of the corpus bytes to the power alpha (XLM: 0.5); "
                   "neither flag: by size")
    p.add_argument("--model_type", default="unigram", choices=("unigram", "bpe"), help="spm: the algorithm")
    p.add_argument("--character_coverage", type=float, default=0.9995,
                   help="spm, unigram (SentencePiece's trainer): share of characters covered")
    p.add_argument("--add_space_token", action="store_true",
                   help="spm: spaces become <_> before training and encoding (the users' Thai setup)")
    p.add_argument("--min_frequency", type=int, default=1, help="word-level: drop words seen fewer times")
    p.add_argument("--compare_with", default=None,
                   help="another tokenizer dir: the report gives its figures beside the new one's")
    p.add_argument("--compare_type", default="auto", help="--tokenizer_type of --compare_with")
    p.add_argument("--num_workers", type=int, default=None,
                   help="processes that read the sample (at most one per "
                   f"{READ_PER_READER >> 20} MB of the corpora; below two, it is read in the command's own "
                   "process) and count newmm/syllable words; SentencePiece (spm, unigram) trains on "
                   f"{SPM_THREADS} threads whatever this is, since its pieces follow its thread count "
                   "(default: all cores)")
    return p


def corpora_of(args: argparse.Namespace) -> dict[str, str]:
    """``{name: dirs}``: the named corpora, or the one unnamed corpus as ``corpus``."""
    value = ",".join(args.train_dir)
    named = parse_named(value, "--train_dir")
    if args.mixture and args.mixture_alpha is not None:  # as mlm-train (train/flags.py): the same flags, the same refusals
        raise UserError("--mixture and --mixture_alpha both given: weights or a smoothing, not both")
    if args.mixture_alpha is not None and not 0.0 <= args.mixture_alpha <= 1.0:
        raise UserError(f"--mixture_alpha {args.mixture_alpha:g}: must be between 0 and 1 (XLM: 0.5)")
    if named is None and (args.mixture or args.mixture_alpha is not None):
        raise UserError("--mixture/--mixture_alpha weigh named corpora: give --train_dir as NAME=DIR entries")
    if named is not None and args.mixture:
        parse_mixture(args.mixture, list(named))  # an unknown corpus: one line, before any reading
    if named is not None:  # as mlm-preprocess: one text under two names would weigh twice in the sample
        refuse_shared_corpora(named, {}, normalise_ext(args.ext), args.recursive)
    return named or {"corpus": value}


def readers_for(stored: int, num_workers: int) -> int:
    """Processes to read the sample with (``Readers``): one per ``READ_PER_READER`` bytes of the corpora
    (as stored), at most ``num_workers``, and none (read here) below two: a reader costs a fork and the
    lines it sends back, and on 2 cores 2 readers drew the bench's 5 MB sample of 20 MB in 0.21-0.30 s
    against 0.20-0.26 s here, and 50 MB of 100 MB in 0.92-0.99 s against 0.86 s."""
    n = min(num_workers, stored // READ_PER_READER)
    return n if n >= 2 else 0


def draw_sample(args: argparse.Namespace, corpora: dict[str, str]) -> tuple[dict[str, Drawn], dict[str, float]]:
    """Each corpus's drawn lines, and the shares asked of them."""
    ext = normalise_ext(args.ext)
    if not ext:
        raise UserError("--ext is empty; give the shards' extension, e.g. --ext txt")
    fmts = formats_of(ext)
    files = {n: CorpusFiles(n, list_shards(d, fmts, "--train_dir", args.recursive, args.text_column,
                                           has_recursive=True)) for n, d in corpora.items()}
    sizes = {n: f.stored_bytes for n, f in files.items()}
    shares = weights(list(corpora), sizes, args.mixture, args.mixture_alpha, unit="text")
    goal = targets(sizes, shares, int(args.sample_bytes * GB))
    drawn = {}
    stored = sum(sizes[n] for n in sizes if goal[n] > 0)
    processes = readers_for(stored, args.num_workers)
    with reading_bar(stored, "sample: reading") as bar, Readers(processes) as readers:
        for n, f in files.items():
            if goal[n] > 0:
                drawn[n] = draw(f, goal[n], args.seed, args.text_column, readers, bar.update)
    check_text(files, drawn)
    if args.mixture or args.mixture_alpha is not None:  # by size (neither flag), whatever each gives is its share
        short = balance(drawn, shares)
        if short:
            print(f"note: {', '.join(short)} gave less text than {'its' if len(short) == 1 else 'their'} share of "
                  f"--sample_bytes; the other corpora are cut to keep the shares asked (add text there, or "
                  "change --mixture, for a bigger sample)", file=sys.stderr)
    return drawn, shares


def shares_table(drawn: dict[str, Drawn], shares: dict[str, float]) -> str:
    total = sum(d.text_bytes for d in drawn.values()) or 1
    rows = [f"  {'corpus':<16} {'asked':>7} {'drawn':>7} {'text bytes':>14} {'lines':>10}"]
    rows += [f"  {n:<16} {shares[n]:>7.1%} {d.text_bytes / total:>7.1%} {d.text_bytes:>14,} {len(d.lines):>10,}"
             for n, d in drawn.items()]
    return "\n".join(["the sample's share of each corpus:", *rows])


def training_record(args: argparse.Namespace, corpora: dict[str, str], drawn: dict[str, Drawn],
                    shares: dict[str, float], digest: str, vocab_size: int | None) -> dict[str, Any]:
    """What the tokenizer was trained from: enough to tell, a year later, which text made it."""
    return {
        "type": args.type,
        "parameters": {"vocab_size": args.vocab_size, "vocab_size_rounded": vocab_size,
                       "vocab_multiple": args.vocab_multiple, "model_type": args.model_type,
                       "character_coverage": args.character_coverage, "add_space_token": args.add_space_token,
                       "min_frequency": args.min_frequency},
        "seed": args.seed, "sample_bytes": int(args.sample_bytes * GB),
        "sample": {"digest": digest, "text_bytes": sum(d.text_bytes for d in drawn.values()),
                   "lines": sum(len(d.lines) for d in drawn.values()), "held_out": HELD_OUT,
                   "held_out_max_bytes": HELD_OUT_BYTES},
        "ext": normalise_ext(args.ext), "text_column": args.text_column, "recursive": args.recursive,
        "corpora": {n: {"dirs": [os.path.abspath(x) for x in corpora[n].split(",")], "weight": shares[n],
                        "text_bytes": d.text_bytes, "lines": len(d.lines),
                        "held_out": held_out_share(d.text_bytes),
                        "shards": [{"path": p, "bytes": b, "digest": h} for p, b, h in d.shards]}
                    for n, d in drawn.items()},
        "command": ["mlm-train-tokenizer", *sys.argv[1:]],
    }


def train(args: argparse.Namespace) -> str:
    from preprocess import tokenizer_report

    check_args(args)
    for left, pid in remove_leftovers(Path(args.output_dir)):
        print(f"note: removed {left}, the unfinished output of a run for this --output_dir that was killed "
              f"(process {pid} is gone)", file=sys.stderr)
    corpora = corpora_of(args)
    compare = tokenizer_report.load_for_compare(args.compare_with, args.compare_type) if args.compare_with else None
    start = time.perf_counter()
    try:
        drawn, shares = draw_sample(args, corpora)
    except WorkerDied as e:
        raise UserError(f"{e}; rerun, with fewer --num_workers or a smaller --sample_bytes if memory ran out") from None
    except OSError as e:  # a file that vanished or cannot be read mid-run
        raise UserError(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}; no tokenizer was written") from None
    if not any(d.lines for d in drawn.values()):
        raise UserError(f"--train_dir {','.join(args.train_dir)}: no text in its shards; nothing to train on")
    print(shares_table(drawn, shares))
    training: list[str] = []
    held: dict[str, list[str]] = {}
    for n, d in drawn.items():
        keep, test = held_out(d.lines, held_out_share(d.text_bytes), args.seed)
        training += keep
        held[n] = test
    digest = sample_digest([s for d in drawn.values() for s in d.lines])
    family = FAMILIES[args.type]
    vocab_size = round_vocab(args.vocab_size, args.vocab_multiple) if args.vocab_size else None
    check_sample(args, training, vocab_size)
    for n in (n for n, test in held.items() if not test):
        print(f"note: {n}: none of its {len(drawn[n].lines):,} sampled lines fell in the held-out {held_out_share(drawn[n].text_bytes):.0%}; "
              "its report row has no figures (add text to measure it)", file=sys.stderr)
    if vocab_size and vocab_size != args.vocab_size:
        print(f"note: --vocab_size {args.vocab_size} rounded up to {vocab_size}, a multiple of {args.vocab_multiple} "
              "(--vocab_multiple 1: as given)", file=sys.stderr)
    out = Path(args.output_dir)
    with writing(out) as work:  # renamed to --output_dir once complete (preprocess/tokenizer_output.py)
        try:
            result = _train_into(args, work, training, held, compare, family, vocab_size)
        except WorkerDied as e:  # a word-level count's worker: each holds its own PyThaiNLP dictionary
            raise UserError(f"{e}; no tokenizer was written; rerun with fewer --num_workers (each {args.type} "
                            "worker holds its own copy of PyThaiNLP's dictionary: newmm's is about 75 MB) or a "
                            "smaller --sample_bytes") from None
        write_json_atomic(work / TRAINING_FILE, training_record(args, corpora, drawn, shares, digest, vocab_size))
    print(result[1])
    flags = f"--tokenizer_type {family.tokenizer_type}" + (" --add_space_token" if args.add_space_token else "")
    return (f"{args.type} tokenizer with {result[0]:,} ids from {len(training):,} lines "
            f"(sample {digest[:12]}, {sum(len(d.shards) for d in drawn.values()):,} shards) in "
            f"{time.perf_counter() - start:.1f} s -> {out} (load it with {flags})")


def _load_back(out: Path, family: Any, args: argparse.Namespace, sample: list[str],
               segmented: dict[str, list[str]] | None) -> tuple[int, Any]:
    """The new tokenizer in ``out`` read back, and ready to measure: (its ids, its report ``Subject``).

    A ``tokenizers``-backed family (``--tokenizer_type auto``) is read as common/fast_tokenizer.py wrote
    it, a word-level one as common/word_level.py did, without importing transformers (0.5-0.8 s; that
    the train stage's loaders read these files alike, the tests check for each family); spm with its class.
    ``segmented``: the held-out lines as the family's workers segmented them (word-level)."""
    from preprocess import tokenizer_report

    try:
        if family.tokenizer_type == "auto":
            fast = read_fast_dir(out)
            return fast.vocab_size, tokenizer_report.fast_subject(fast)
        if family.tokenizer_type in SEGMENTERS:  # word-level, as common/word_level.py wrote it
            vocab = read_word_dir(out, TOKENIZER_TYPES[family.tokenizer_type].class_name)
            segment = with_segmented(SEGMENTERS[family.tokenizer_type], segmented or {})
            return len(vocab), tokenizer_report.word_subject(vocab, segment)
    except TokenizerDirError as e:
        raise UserError(f"the trained tokenizer does not load back: {e}") from None
    try:
        loaded = load_tokenizer(str(out), family.tokenizer_type, {"add_space_token": args.add_space_token})
    except TokenizerError as e:
        raise UserError(f"the trained tokenizer does not load back: {e}") from None
    return loaded.identity.vocab_size, tokenizer_report.subject(loaded.tokenizer, sample)


def _train_into(args: argparse.Namespace, out: Path, training: list[str], held: dict[str, list[str]],
                compare: Any, family: Any, vocab_size: int | None) -> tuple[int, str]:
    """Train, load back and report into ``out``: (the ids it made, the report's table)."""
    from preprocess import tokenizer_report

    options = FamilyOptions(vocab_size, args.num_workers, args.model_type, args.character_coverage,
                            args.add_space_token, args.min_frequency,
                            [p for test in held.values() for s in test for p in bounded_pieces(s)])
    with Ticker(f"{args.type}: training on {len(training):,} lines and writing (the trainer reports no progress)"):
        segmented = family.train(training, out, options)
    sample = tokenizer_report.probe_sample(held)
    ids, trained = _load_back(out, family, args, sample, segmented)
    other = (compare[0], tokenizer_report.subject(compare[1], sample)) if compare else None
    rep = tokenizer_report.report(held, trained, other)
    tokenizer_report.write(rep, out / REPORT_FILE)
    return ids, tokenizer_report.table(rep)


def main(argv: list[str] | None = None) -> int:
    # TOKENIZERS_PARALLELISM as the user set it (tokenizers' default: on), where mlm-preprocess forces it off:
    # every fork here (the sample's readers, the word counts) comes before tokenizers first runs threads
    # (training), so no child inherits a thread pool it would hang on. Training on every core: 4.87 s
    # instead of 5.43 s for the bench's 5 MB bpe run (docs/benchmarks.md), the same files (tested).
    args = parse_args(build_parser(), sys.argv[1:] if argv is None else argv)

    def body() -> int:
        args.num_workers = available_cores() if args.num_workers is None else args.num_workers
        print(train(args))
        return 0

    return run_command(body, "no tokenizer was written; rerun with an empty --output_dir")


def cli() -> NoReturn:
    """The console script: ``main``, then the process ends at once (``exit_without_teardown``): every file
    is closed and every worker gone when ``main`` returns."""
    exit_without_teardown(main())


if __name__ == "__main__":
    cli()
