"""``mlm-train-tokenizer`` / ``python -m preprocess.train_tokenizer``: train a tokenizer offline.

* ``--type spm``: a SentencePiece model (unigram or BPE) with the users' ids:
  ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, user-defined ``<mask>`` and
  ``<_>``; saved as a ``ThaiRobertaTokenizer`` dir plus a ``tokenizer.json`` twin.
* ``--type newmm|syllable``: a word-level vocabulary over PyThaiNLP's
  segmenter, counted in parallel over newline-aligned byte ranges.

The output dir loads with ``--tokenizer_type`` equal to ``--type``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from common.cli import parse_args, run_command
from common.config import normalise_ext
from common.errors import UserError
from common.format import SPACE_TOKEN
from common.tokenizer import TOKENIZER_TYPES, TRAINABLE_TYPES, TokenizerError, load_tokenizer
from preprocess.cleaning import clean_lines, decode_bytes
from preprocess.config import available_cores
from preprocess.formats import TEXT, formats_of
from preprocess.inputs import list_shards
from preprocess.scan import scan_shards
from preprocess.tasks import Reading, Task, tasks_of
from preprocess.workers import Workers

_COUNT_STATE: dict[str, str] = {}  # set before the pool forks, read by the workers
COUNT_BYTES = 4 << 20  # a word-count task reads about this much


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, but for a flag that has none (required, or worked out at run time:
    its help says how)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None or action.required else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlm-train-tokenizer", description=__doc__.split("\n\n")[0],
                                formatter_class=_Defaults)
    p.add_argument("--type", required=True, choices=TRAINABLE_TYPES, help="what to train")
    p.add_argument("--train_dir", required=True, help="dir of text shards; every *.<ext> file is read")
    p.add_argument("--ext", default="txt", help="shard extension, with or without the dot; several, comma-separated "
                   "(txt,text): every file with any of them (uncompressed text only)")
    p.add_argument("--output_dir", required=True, help="where the tokenizer is saved")
    p.add_argument("--vocab_size", type=int, default=None,
                   help="vocabulary size ceiling (spm: required; word-level: cap after --min_frequency)")
    p.add_argument("--model_type", default="unigram", choices=("unigram", "bpe"), help="spm: the algorithm")
    p.add_argument("--character_coverage", type=float, default=0.9995, help="spm: share of characters covered")
    p.add_argument("--input_sentence_size", type=int, default=2_000_000,
                   help="spm: at most this many lines, sampled, go into training")
    p.add_argument("--add_space_token", action="store_true",
                   help="spm: spaces become <_> before training and encoding (the users' Thai setup)")
    p.add_argument("--min_frequency", type=int, default=1, help="word-level: drop words seen fewer times")
    p.add_argument("--num_workers", type=int, default=None, help="processes (default: all cores)")
    return p


def _lines(shards: list[Path], bar: tqdm) -> Iterator[str]:
    for path in shards:
        with open(path, "rb") as f:
            for raw in f:
                bar.update(len(raw))
                yield from clean_lines(decode_bytes(raw)[0])


class Ticker:
    """A progress line for a phase that reports nothing itself (SentencePiece's training, saving):
    the phase's name and its elapsed time, refreshed twice a second, so a long phase shows life."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: tqdm | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        while not self.stop.wait(0.5):
            self.bar.refresh()

    def start(self) -> None:
        self.bar = tqdm(desc=self.desc, bar_format="{desc}: {elapsed} elapsed", dynamic_ncols=True)
        self.thread.start()

    def end(self) -> None:
        """Stop the line; a no-op if it never started."""
        if self.bar is not None:
            self.stop.set()
            self.thread.join()
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Ticker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()


def train_spm(args: argparse.Namespace, shards: list[Path], out: Path) -> Path:
    import sentencepiece as spm

    if not args.vocab_size:
        raise UserError("--vocab_size is required for --type spm")
    total = sum(p.stat().st_size for p in shards)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="spm: reading", dynamic_ncols=True)
    training = Ticker("spm: training (SentencePiece reports no progress of its own)")

    def text() -> Iterator[str]:
        """The lines, then the reading bar closes and the training phase shows: the trainer has them all."""
        for s in _lines(shards, bar):
            yield s.replace(" ", SPACE_TOKEN) if args.add_space_token else s
        bar.close()
        training.start()

    model = out / "spm.model"
    try:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=text(), model_prefix=str(out / "spm"), vocab_size=args.vocab_size,
                model_type=args.model_type, character_coverage=args.character_coverage,
                bos_id=0, pad_id=1, eos_id=2, unk_id=3, user_defined_symbols=["<mask>", SPACE_TOKEN],
                input_sentence_size=args.input_sentence_size, shuffle_input_sentence=True,
                hard_vocab_limit=False,  # a ceiling: a small corpus gets what it supports (reported)
                num_threads=args.num_workers, minloglevel=2,
            )
        except RuntimeError as e:  # e.g. a vocab_size the text cannot fill
            raise UserError(f"sentencepiece: {str(e).strip().splitlines()[-1]}") from None
    finally:
        bar.close()
        training.end()
    return model


def _count(task: Task) -> Counter:
    segment = TOKENIZER_TYPES[_COUNT_STATE["type"]].tokenizer_class().segment
    with open(task.path, "rb") as f:
        f.seek(task.start)
        text = decode_bytes(f.read(task.end - task.start))[0]
    counts: Counter = Counter()
    for line in clean_lines(text):
        counts.update(w for w in segment(line) if w and not w.isspace())
    return counts



def count_words(args: argparse.Namespace, shards: list[Path]) -> Counter:
    """Word counts over every shard, one task per ~4 MB range, in ``--num_workers`` processes."""
    _COUNT_STATE["type"] = args.type
    scans = scan_shards(shards, [TEXT] * len(shards), COUNT_BYTES, column="text")  # train() takes text only
    reading = Reading(column="text", task_bytes=COUNT_BYTES, select=None, spill_dir="")
    tasks = [t for i, (p, scan) in enumerate(zip(shards, scans)) for t in tasks_of(i, p, scan, TEXT, reading)]
    total: Counter = Counter()
    with tqdm(total=sum(p.stat().st_size for p in shards), unit="B", unit_scale=True,
              desc=f"{args.type}: counting words", dynamic_ncols=True) as bar:
        workers = Workers(args.num_workers, _count) if args.num_workers > 1 else None
        try:
            for task, counts in zip(tasks, workers.imap(tasks) if workers else map(_count, tasks)):
                total.update(counts)
                bar.update(task.end - task.start)
        finally:
            if workers is not None:
                workers.kill()
    return total


def train(args: argparse.Namespace) -> str:
    from common import tokenizer_types

    ext = normalise_ext(args.ext)
    if not ext:
        raise UserError("--ext is empty; give the shards' extension, e.g. --ext txt")
    formats = formats_of(ext)
    for e, fmt in formats.items():
        if fmt != TEXT:
            raise UserError(f"--ext {e}: mlm-train-tokenizer reads uncompressed text shards only; train the tokenizer "
                            "on a text sample of the corpus (e.g. a few .txt files of its documents)")
    shards = [p for _, p, _ in list_shards(args.train_dir, formats, "--train_dir", False, "text", has_recursive=False)]
    out = Path(args.output_dir)
    if out.is_dir() and any(out.iterdir()):
        # Files of an earlier tokenizer (a tokenizer.json twin, say) would be loaded instead of the new one.
        raise UserError(f"--output_dir {out} is not empty; give a new dir or delete it first")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.type == "spm":
        model = train_spm(args, shards, out)
        with Ticker("spm: writing (the model, and its tokenizer.json twin)"):
            tok = tokenizer_types.ThaiRobertaTokenizer(vocab_file=str(model), add_space_token=args.add_space_token)
            tok.save_pretrained(out)
        for leftover in (model, out / "spm.vocab"):
            leftover.unlink()
    else:
        counts = count_words(args, shards)
        vocab = tokenizer_types.build_word_vocab(counts, args.vocab_size, args.min_frequency)
        vocab_file = out / "vocab.json"
        import json

        with Ticker(f"{args.type}: writing"):
            vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
            TOKENIZER_TYPES[args.type].tokenizer_class()(vocab_file=str(vocab_file)).save_pretrained(out)
    try:
        loaded = load_tokenizer(str(out), args.type, {"add_space_token": args.add_space_token})
    except TokenizerError as e:
        raise UserError(f"the trained tokenizer does not load back: {e}") from None
    return (f"{args.type} tokenizer with {loaded.identity.vocab_size:,} ids from {len(shards)} shards "
            f"in {time.perf_counter() - start:.1f} s -> {out} (load it with --tokenizer_type {args.type}"
            f"{' --add_space_token' if args.add_space_token else ''})")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(build_parser(), sys.argv[1:] if argv is None else argv)

    def body() -> int:
        args.num_workers = available_cores() if args.num_workers is None else args.num_workers
        if args.num_workers < 1:
            raise UserError(f"--num_workers {args.num_workers}: must be at least 1")
        print(train(args))
        return 0

    return run_command(body, "no tokenizer was written; rerun with an empty --output_dir")


if __name__ == "__main__":
    sys.exit(main())
