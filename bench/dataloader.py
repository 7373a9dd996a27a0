#!/usr/bin/env python
"""Benchmark the training-side data path: our memmap dataset vs the original one, and vs what a GPU eats.

Everything is built locally and deterministically under ``--out`` (default
``bench_out/dataloader/``, gitignored): an English-like corpus of made-up
words, a byte-level BPE tokenizer trained on a sample of it, and a cache
built by our own ``python -m preprocess`` at ``--max_seq_length 512``.
From the same blocks it also writes the original tool's files (token ids
and block offsets as uint32 in two flat binary files), then measures, side
by side in one process with the same sampler, collator and batch size:

* ours: ``train.dataset.MemmapConcatFullSentenceTextDataset`` + ``train.collator.MlmCollator``;
* original: a faithful copy of the old ``MemmapIndexDataset`` /
  ``MemmapConcatFullSentenceTextDataset.__getitem__`` (mmap slice,
  ``struct.unpack`` into a tuple, ``torch.tensor(tuple)``) + the same collator;
* GPU need: the batches/s roberta-base at 512 tokens would consume on one
  H100, derived from a stated FLOPs/MFU assumption (not measured).

Prints one markdown table to stdout and writes it to ``<out>.md``
(``bench_out/dataloader.md``); progress goes to stderr.
"""

from __future__ import annotations

import os

# Before any tokenizer exists in this process: preprocess forks workers, and a
# fork after the Rust thread pool ran can hang the children.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import json
import mmap
import platform
import shlex
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from transformers import DataCollatorForLanguageModeling

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout too (a GPU node), not only where the project is installed

from common.reader import SplitReader  # noqa: E402
from common.tokenizer import load_tokenizer  # noqa: E402
from train.collator import TRAIN_STREAM, MlmCollator  # noqa: E402
from train.dataset import MemmapConcatFullSentenceTextDataset  # noqa: E402
from train.sampling import Keyed  # noqa: E402

MAX_SEQ_LENGTH = 512
CORPUS_VERSION = 1  # bump when the generator changes: the cached corpus is then rebuilt
SHARD_MB = 8
TOKENIZER_SAMPLE_MB = 4
ITEM_WARMUP = 500  # dataset[i] calls before the item-access clock starts

# GPU-need assumption: the standard 6 * params FLOPs per token for forward +
# backward (attention score FLOPs left out), at a typical-good MFU.
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM, bf16 dense tensor-core peak (no sparsity)
ASSUMED_MFU = 0.40

EN_COMMON = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had by "
    "word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has look "
    "more day could go come did number sound no most people my over know water than call first who may down"
).split()
ONSETS = ("", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr", "pl",
          "gr", "ch", "sh", "th", "br", "cl")
NUCLEI = ("a", "e", "i", "o", "u", "ea", "ou", "ai", "io", "ee", "oo", "y")
CODAS = ("", "", "n", "r", "s", "t", "l", "nd", "ng", "st", "ck", "m", "rt", "ll", "ss")

_T0 = time.perf_counter()


def log(msg: str) -> None:
    """Progress to stderr, so stdout carries only the table."""
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def make_vocabulary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Common English words, then made-up words, with Zipf weights: a long tail like real text.

    Returns (words as an object array, cumulative probabilities) so lines can
    be drawn with one searchsorted per chunk instead of per word.
    """
    rng = np.random.default_rng(seed)
    words = list(dict.fromkeys(EN_COMMON))
    seen = set(words)
    while len(words) < n:
        word = "".join(ONSETS[rng.integers(len(ONSETS))] + NUCLEI[rng.integers(len(NUCLEI))]
                       + CODAS[rng.integers(len(CODAS))] for _ in range(int(rng.integers(1, 5))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    cdf = np.cumsum(1.0 / (np.arange(n) + 2.7))
    return np.array(words, dtype=object), cdf / cdf[-1]


def make_lines(rng: np.random.Generator, words: np.ndarray, cdf: np.ndarray, n: int) -> list[str]:
    """n lines of varied length: mostly sentences, some paragraphs, ~1% longer than a 512-token block.

    The long ones matter: they are the lines a block has to split, so the
    block-length distribution looks like real FULL-SENTENCES packing.
    """
    lengths = 1 + (rng.random(n) ** 3 * 120).astype(np.int64)  # 1..120 words, skewed short
    long = rng.random(n) < 0.01
    lengths[long] = rng.integers(300, 900, size=int(long.sum()))
    ids = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum())), side="right"), len(words) - 1)
    drawn = words[ids].tolist()
    lines, at = [], 0
    for k in lengths.tolist():
        line = drawn[at : at + k]
        at += k
        line[0] = line[0].capitalize()
        lines.append(" ".join(line) + ".")
    return lines


def make_corpus(root: Path, mb: float, seed: int) -> list[Path]:
    """Write ~mb MB (10**6 bytes) of text in SHARD_MB shards; reused when already built with these settings."""
    stamp = {"version": CORPUS_VERSION, "mb": mb, "seed": seed}
    stamp_path = root / "corpus.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return sorted(root.glob("*.txt"))
    root.mkdir(parents=True, exist_ok=True)
    for p in root.glob("*.txt"):
        p.unlink()
    words, cdf = make_vocabulary(30_000, seed)
    rng = np.random.default_rng(seed + 1)
    target, written, shard, paths = int(mb * 1e6), 0, 0, []
    while written < target:
        path = root / f"shard_{shard:03d}.txt"
        size = 0
        with open(path, "w", encoding="utf-8") as f:
            while size < min(SHARD_MB * 1e6, target - written):
                text = "\n".join(make_lines(rng, words, cdf, 5000)) + "\n"
                f.write(text)
                size += len(text.encode("utf-8"))
        written += size
        paths.append(path)
        shard += 1
    stamp_path.write_text(json.dumps(stamp))
    log(f"corpus: {written / 1e6:.1f} MB in {len(paths)} shards under {root}")
    return paths


def train_tokenizer(shards: Sequence[Path], out: Path, vocab_size: int) -> Path:
    """RoBERTa-style byte-level BPE trained on the first TOKENIZER_SAMPLE_MB of the corpus; reused if present."""
    if (out / "tokenizer.json").is_file():
        return out
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    with open(shards[0], encoding="utf-8") as f:
        sample = f.read(int(TOKENIZER_SAMPLE_MB * 1e6)).splitlines()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(sample, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(out)
    log(f"tokenizer: byte-level BPE, {tok.get_vocab_size()} ids, saved to {out}")
    return out


def build_cache(corpus: Path, tokenizer: Path, cache: Path) -> Path:
    """Our preprocess CLI, as a user runs it; a rerun on an unchanged corpus is a no-op."""
    from preprocess.__main__ import main as preprocess

    cores = len(os.sched_getaffinity(0))
    argv = ["--tokenizer_name_or_path", str(tokenizer), "--train_dir", str(corpus), "--datasets_cache_dir",
            str(cache), "--max_seq_length", str(MAX_SEQ_LENGTH), "--num_workers", str(cores)]
    t = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its report lines are progress here, not the table
        rc = preprocess(argv)
    if rc != 0:
        raise SystemExit(f"preprocess failed (rc {rc}): python -m preprocess {shlex.join(argv)}")
    log(f"cache: {cache} ({time.perf_counter() - t:.1f}s, no-op if it was already built)")
    return cache


# --------------------------------------------------------------------------- the original dataset


class OriginalMemmapIndexDataset:
    """The old tool's ``MemmapIndexDataset`` read path, kept as it was.

    ``arr.dat``: every block's ids as little-endian uint32, back to back;
    ``idx_arr.dat``: n + 1 uint32 offsets (in ids) starting with 0. Both are
    ``mmap``ed in ``load()``; DataLoader workers inherit the maps by fork.
    """

    def __init__(self, arr_fname: str, idx_arr_fname: str):
        self.arr_fname, self.idx_arr_fname = arr_fname, idx_arr_fname
        self.n = 0
        self.load()

    def load(self) -> None:
        with open(self.arr_fname) as arr_f, open(self.idx_arr_fname) as idx_arr_f:
            self.mm_arr = mmap.mmap(arr_f.fileno(), length=0, access=mmap.ACCESS_READ)
            self.mm_idx_arr = mmap.mmap(idx_arr_f.fileno(), length=0, access=mmap.ACCESS_READ)
            idx_arr_f.seek(idx_arr_f.tell(), os.SEEK_END)
            self.n = (idx_arr_f.tell() - 4) // 4

    def __getitem__(self, idx: int) -> tuple[int, ...]:
        if idx > self.n - 1:
            raise IndexError
        elif idx < 0:
            if abs(idx) > self.n:
                raise IndexError
            return self.__getitem__(self.n + idx)
        start, stop = struct.unpack("<2I", self.mm_idx_arr[4 * idx : 4 * idx + 8])
        return struct.unpack(f"<{stop - start}I", self.mm_arr[4 * start : 4 * stop])

    def __len__(self) -> int:
        return self.n


class OriginalConcatFullSentenceDataset(Dataset):
    """The old ``MemmapConcatFullSentenceTextDataset`` once its cache exists: tuple of ints -> ``torch.tensor``."""

    def __init__(self, cache_dir: Path):
        self.memmap_index_dataset = OriginalMemmapIndexDataset(str(cache_dir / "arr.dat"),
                                                               str(cache_dir / "idx_arr.dat"))

    def __len__(self) -> int:
        return len(self.memmap_index_dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(self.memmap_index_dataset[i], dtype=torch.long)


def write_original_files(ours: MemmapConcatFullSentenceTextDataset, out: Path) -> Path:
    """The original's two files holding exactly our blocks (bos + ids + eos), so both serve identical data.

    Building is not timed: only reading is compared.
    """
    out.mkdir(parents=True, exist_ok=True)
    blocks = [ours.reader.block(i) for i in range(len(ours))]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blocks])])
    if offsets[-1] >= 2**32:
        raise SystemExit("corpus too big for the original's uint32 offsets; lower --mb")
    np.concatenate(blocks).astype("<u4").tofile(out / "arr.dat")
    offsets.astype("<u4").tofile(out / "idx_arr.dat")
    ours.reader.close()  # reopened lazily; DataLoader workers open the files themselves
    return out


# --------------------------------------------------------------------------- the reader without its id check


class UncheckedReader(SplitReader):
    """Our reader less its one check per block that every id lies inside the vocabulary (an id past it,
    from a file altered under a running job, would fail deep in the embedding): the row that prices it."""

    def _framed(self, files: Any, piece: int, s: int, e: int) -> np.ndarray:
        path, info, dtype, _, _ = self._files[piece]
        fd, offset = self._fd(files, path, info)
        data = os.pread(fd, (e - s) * dtype.itemsize, offset + s * dtype.itemsize)
        out = np.empty(e - s + 2, dtype=np.int64)
        out[0], out[-1] = self.bos, self.eos
        out[1:-1] = np.frombuffer(data, dtype)
        return out


def unchecked(ds: MemmapConcatFullSentenceTextDataset) -> MemmapConcatFullSentenceTextDataset:
    """The same dataset reading through ``UncheckedReader``."""
    other = MemmapConcatFullSentenceTextDataset.__new__(MemmapConcatFullSentenceTextDataset)
    other.__dict__.update(ds.__dict__)
    other.reader = UncheckedReader(ds.reader.split_dir, ds.reader.manifest)
    return other


# --------------------------------------------------------------------------- measurements


def paired_rates(ours: Callable[[], float], orig: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Medians of ``repeats`` rates each, ours and original taken in alternating order.

    Interleaved so a burst of load from another process on a shared box hits
    both sides alike, and the median so one slow run does not decide a ratio.
    """
    a, b = [], []
    for k in range(repeats):
        if k % 2 == 0:
            a.append(ours())
            b.append(orig())
        else:
            b.append(orig())
            a.append(ours())
    return statistics.median(a), statistics.median(b)


def median_rate(fn: Callable[[], float], repeats: int) -> float:
    """Median of ``repeats`` rates, for a measurement with no counterpart."""
    return statistics.median(fn() for _ in range(repeats))


def item_rate(ds: Dataset, order: np.ndarray) -> float:
    """blocks/s of ``ds[i]`` in a fixed random order, in this process: the dataset alone, nothing else."""
    for i in order[:ITEM_WARMUP].tolist():
        ds[i]
    idx = order[ITEM_WARMUP:].tolist()
    t = time.perf_counter()
    for i in idx:
        ds[i]
    return len(idx) / (time.perf_counter() - t)


def loader(ds: Dataset, collate: Callable[[list[torch.Tensor]], Any], batch_size: int, workers: int,
           seed: int) -> DataLoader:
    """The DataLoader the Trainer builds for a map-style set: random sampler from a fixed seed, drop_last."""
    return DataLoader(ds, batch_size=batch_size, sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(seed)),
                      collate_fn=collate, num_workers=workers, drop_last=True)


def loader_rate(ds: Dataset, collate: Callable, batch_size: int, workers: int, batches: int, warmup: int,
                seed: int) -> float:
    """batches/s over ``batches`` batches after ``warmup`` (worker start-up and first prefetch excluded)."""
    torch.manual_seed(seed)  # the collator's masking draws from the global RNG
    it = iter(loader(ds, collate, batch_size, workers, seed))
    for _ in range(warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches / (time.perf_counter() - t)
    del it  # shuts the workers down before the next measurement
    return rate


def collator_rate(ds: Dataset, collate: Callable, batch_size: int, batches: int, order: np.ndarray) -> float:
    """batches/s of the collator alone on prefetched examples: the ceiling any dataset can reach with it."""
    examples = [ds[i] for i in order[: batch_size * batches].tolist()]
    groups = [examples[k * batch_size : (k + 1) * batch_size] for k in range(len(examples) // batch_size)]
    collate(groups[0])
    t = time.perf_counter()
    for g in groups:
        collate(g)
    return len(groups) / (time.perf_counter() - t)


def same_batches(a: Dataset, b: Dataset, collate: Callable, batch_size: int, seed: int) -> bool:
    """True when both datasets give identical masked batches under one seed: the comparison is like for like."""
    out = []
    for ds in (a, b):
        torch.manual_seed(seed)
        out.append(next(iter(loader(ds, collate, batch_size, 0, seed))))
    return all(torch.equal(out[0][k], out[1][k]) for k in out[0])


@dataclass(frozen=True)
class GpuNeed:
    params: int
    samples_per_s: float
    batches_per_s: float
    assumption: str


def gpu_need(batch_size: int, mfu: float, peak_tflops: float) -> GpuNeed:
    """What one GPU training roberta-base at 512 tokens consumes, from 6*N FLOPs/token at an assumed MFU.

    Derived, not measured: the loader only has to beat this, so it is the bar
    that decides whether the data path can ever be the bottleneck.
    """
    from transformers import AutoConfig, RobertaForMaskedLM

    config = AutoConfig.from_pretrained(REPO / "train" / "configs" / "roberta-base.json")
    config.vocab_size = 50265
    with torch.device("meta"):  # count parameters without allocating 500 MB
        params = RobertaForMaskedLM(config).num_parameters()
    samples = mfu * peak_tflops * 1e12 / (6 * params * MAX_SEQ_LENGTH)
    assumption = (f"roberta-base ({params / 1e6:.1f}M params, vocab 50265), 512 tokens, 6·N FLOPs/token, "
                  f"{mfu:.0%} MFU of {peak_tflops:g} TFLOP/s (H100 SXM bf16 dense) = {samples:,.0f} samples/s")
    return GpuNeed(params, samples, samples / batch_size, assumption)


# --------------------------------------------------------------------------- report


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def table(rows: list[tuple[str, str, str, str, str, str]], need: GpuNeed, context: list[str]) -> str:
    """The markdown table plus the lines that say what was measured on what."""
    head = ["measurement", "unit", "ours", "original", "ours / original", "ours ÷ GPU need"]
    lines = [f"GPU need assumption: {need.assumption}", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + [""] + [f"- {c}" for c in context]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=30.0, help="corpus size in MB (10**6 bytes)")
    ap.add_argument("--batches", type=int, default=200, help="timed batches per DataLoader run")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=20, help="batches before the clock starts")
    ap.add_argument("--repeats", type=int, default=5, help="runs per measurement; the median is reported")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to measure")
    ap.add_argument("--vocab_size", type=int, default=16000, help="BPE vocabulary trained for the corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mfu", type=float, default=ASSUMED_MFU, help="assumed GPU MFU for the GPU-need row")
    ap.add_argument("--peak_tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="assumed GPU bf16 dense peak")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "dataloader")
    args = ap.parse_args(argv)

    out: Path = args.out
    load_before = os.getloadavg()[0]
    shards = make_corpus(out / "corpus", args.mb, args.seed)
    tok_dir = train_tokenizer(shards, out / "tokenizer", args.vocab_size)
    cache = build_cache(out / "corpus", tok_dir, out / "cache")

    ours = MemmapConcatFullSentenceTextDataset(cache / "train", MAX_SEQ_LENGTH)
    orig = OriginalConcatFullSentenceDataset(write_original_files(ours, out / "original"))
    n = len(ours)
    needed = (args.warmup + args.batches) * args.batch_size
    if n < needed:
        raise SystemExit(f"{n} blocks < {needed} needed for --warmup + --batches; raise --mb")
    order = np.random.default_rng(args.seed).permutation(n)
    sample = order[:200].tolist()
    if not all(torch.equal(ours[i], orig[i]) for i in sample):
        raise SystemExit("the original files do not hold our blocks: the comparison would be meaningless")

    loaded = load_tokenizer(str(tok_dir))
    ids = loaded.identity.special_ids
    collate = MlmCollator(loaded.tokenizer, [ids.bos, ids.eos, ids.pad], ids.pad, 0.15, max_width=MAX_SEQ_LENGTH)
    ours_keyed, orig_keyed = Keyed(ours, TRAIN_STREAM), Keyed(orig, TRAIN_STREAM)  # (stream, key, ids): the collator's input
    identical = same_batches(ours_keyed, orig_keyed, collate, args.batch_size, args.seed)
    need = gpu_need(args.batch_size, args.mfu, args.peak_tflops)
    item_order = order[: min(n, ITEM_WARMUP + args.batches * args.batch_size)]

    rows: list[tuple[str, str, str, str, str, str]] = []
    log("dataset[i] alone")
    o, r = paired_rates(lambda: item_rate(ours, item_order), lambda: item_rate(orig, item_order), args.repeats)
    rows.append(("`dataset[i]` alone, random order, 1 process", "blocks/s", fmt(o), fmt(r), f"**{o / r:.1f}x**", "—"))
    log("dataset[i] with and without the id check")
    bare = unchecked(ours)
    o2, r2 = paired_rates(lambda: item_rate(ours, item_order), lambda: item_rate(bare, item_order), args.repeats)
    rows.append(("`dataset[i]` alone: ours vs ours without the check that ids lie inside the vocabulary "
                 "(original column: without)", "blocks/s", fmt(o2), fmt(r2), f"**{o2 / r2:.2f}x**", "—"))
    bs = args.batch_size
    for w in args.workers:
        log(f"DataLoader + MlmCollator, num_workers={w}")
        o, r = paired_rates(lambda w=w: loader_rate(ours_keyed, collate, bs, w, args.batches, args.warmup, args.seed),
                            lambda w=w: loader_rate(orig_keyed, collate, bs, w, args.batches, args.warmup, args.seed),
                            args.repeats)
        rows.append((f"DataLoader + MlmCollator, num_workers={w}", "batches/s", fmt(o), fmt(r), f"**{o / r:.2f}x**",
                     f"{o / need.batches_per_s:.1f}x"))
        rows.append(("  (same, in blocks/s)", "blocks/s", fmt(o * bs), fmt(r * bs), f"{o / r:.2f}x", "—"))
    log("whole pipeline, each as its tool built it")
    # The old run_mlm.py gave DataCollatorForLanguageModeling no special-tokens mask, so
    # the collator asks the tokenizer for one per row, a Python loop over every token.
    hf = DataCollatorForLanguageModeling(loaded.tokenizer, mlm_probability=0.15)
    o, r = paired_rates(lambda: loader_rate(ours_keyed, collate, bs, 0, args.batches, args.warmup, args.seed),
                        lambda: loader_rate(orig, hf, bs, 0, args.batches, args.warmup, args.seed), args.repeats)
    rows.append(("pipeline as each tool builds it: ours + MlmCollator vs original + transformers' default MLM "
                 "collator (old run_mlm.py), num_workers=0", "blocks/s", fmt(o * bs), fmt(r * bs),
                 f"**{o / r:.1f}x**", f"{o / need.batches_per_s:.1f}x"))
    log("collator alone")
    c = median_rate(lambda: collator_rate(ours_keyed, collate, args.batch_size, args.batches, order), args.repeats)
    rows.append(("MlmCollator alone on prefetched blocks (ceiling for both)", "batches/s", fmt(c), fmt(c), "1x",
                 f"{c / need.batches_per_s:.1f}x"))
    rows.append(("GPU need: roberta-base, 1 GPU (assumption above)", "batches/s", fmt(need.batches_per_s),
                 fmt(need.batches_per_s), "—", "1x"))

    lengths = np.diff(orig_offsets(out / "original"))
    cmd = "python bench/dataloader.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    context = [
        f"command: `{cmd.strip()}`",
        f"machine: {len(os.sched_getaffinity(0))} cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} threads {torch.get_num_threads()}, Python {platform.python_version()}; "
        f"files in the page cache (warm), no GPU; 1-min load average {load_before:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end (above ~0.5 means other processes shared the cores: rates are noisy)",
        f"data: {args.mb:g} MB English-like corpus -> {n:,} blocks of <= {MAX_SEQ_LENGTH} ids "
        f"(mean {lengths.mean():.0f}), byte-level BPE {loaded.identity.vocab_size:,} ids; "
        f"ours reads {ours.reader.tokens(0).dtype} .npy, original uint32 .dat",
        f"same blocks, sampler (seed {args.seed}), MlmCollator(widths of 64, p=0.15), batch {args.batch_size}; "
        f"identical first masked batch from both: {'yes' if identical else 'NO'}",
        f"rates are the median of {args.repeats} runs (ours and original interleaved) of {args.batches} batches after {args.warmup} warm-up batches; "
        f"item access: {len(item_order) - ITEM_WARMUP:,} `dataset[i]` after {ITEM_WARMUP}",
        "ours ÷ GPU need > 1 means the loader outruns one GPU (with num_workers=w on this 2-core box; "
        "a GPU node has more cores)",
    ]
    text = table(rows, need, context)
    print(text, end="")
    md = out.with_suffix(".md")
    md.write_text(text)
    log(f"wrote {md}")
    return 0


def orig_offsets(d: Path) -> np.ndarray:
    """Block offsets from the original's index file, for the block-length line of the report."""
    return np.fromfile(d / "idx_arr.dat", dtype="<u4").astype(np.int64)


if __name__ == "__main__":
    sys.exit(main())
