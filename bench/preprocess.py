#!/usr/bin/env python
"""Benchmark the preprocess stage side by side with its limit and the alternatives, in one run.

Everything is built locally and deterministically under ``--out`` (default
``bench_out/``, gitignored): an English/Thai corpus split into shards, a
WordPiece fast tokenizer and a SentencePiece slow tokenizer trained on a
sample of it. Then, on the same text and the same cores:

* ours: ``python -m preprocess`` (a subprocess; its wall time, start-up included);
* the limit: the fastest backend encoder of ``candidate_encoders`` in a pool
  of one process per core, ids counted and dropped (no writing, no packing);
* ``tokenizer(batch)`` in the same pool: what a plain transformers user gets;
* upstream ``run_mlm.py``: ``datasets`` ``map`` + ``group_texts``;
* the original single-process ``MemmapConcatFullSentenceTextDataset`` builder;
* a no-op rerun, the peak RSS at two corpus sizes, and bytes per token on disk.

Prints one markdown table to stdout and writes it to ``<out>/preprocess.md``;
progress goes to stderr. ``make bench`` runs it.
"""

from __future__ import annotations

import os

# Before any tokenizer exists in this process: a fork after the Rust thread
# pool ran hangs the children, and N processes x N threads only compete.
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import json
import platform
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
# This file is named preprocess.py: with bench/ first on sys.path, ``import
# preprocess`` would import this script instead of the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

MB = 1_000_000  # every MB and MB/s in the table is 10**6 bytes
MIB = 1 << 20
MAX_SEQ_LENGTH = 512
BATCH_LINES = 1024  # lines per encode call in the pool harness, as preprocess/encode.py
ORIGINAL_CHUNK = 2500  # thai2transformers' tokenize_chunksize default
RSS_INTERVAL_S = 0.05
CORPUS_VERSION = 2  # bump when the generator changes: cached corpora are then rebuilt

# Corpus shape: which share of lines are Thai, words per line, and the like.
THAI_SHARE = 0.3
MAX_WORDS = 200
PARAGRAPH_SHARE = 0.01  # lines of PARAGRAPH_WORDS words: long enough to overflow a 512-token block
PARAGRAPH_WORDS = (300, 800)
BLANK_SHARE = 0.02
PADDED_SHARE = 0.02
COMMA_SHARE = 0.07
NUMBER_SHARE = 0.02
THAI_PHRASE_BREAK = 0.2  # Thai has no spaces between words, only between phrases
EN_VOCAB = 20_000
TH_VOCAB = 40_000

# Tokenizers trained here.
SAMPLE_MB = 4
WORDPIECE_VOCAB = 30_000
SPM_VOCAB = 16_000

EN_COMMON = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had by "
    "word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has look "
    "more day could go come did number sound no most people my over know water than call first who may down "
    "side been now find language model training data text token block shard cache world year"
).split()
ONSETS = ("", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z",
          "st", "tr", "pl", "gr", "ch", "sh", "th", "br", "cl", "sp", "qu")
NUCLEI = ("a", "e", "i", "o", "u", "ea", "ou", "ai", "io", "ee", "oo", "y")
CODAS = ("", "", "n", "r", "s", "t", "l", "nd", "ng", "st", "ck", "m", "x", "rt", "ll", "ss")
TH_FALLBACK = (
    "ภาษา ไทย สวัสดี ครับ ค่ะ ประเทศ คน เมือง ข้อมูล ภาษาศาสตร์ การ เรียน รู้ ของ และ ที่ ใน เป็น มี ได้ ไม่ ให้ "
    "กับ ว่า จะ แล้ว ก็ นี้ ไป มา อยู่ ทำ งาน วัน ปี เวลา ชีวิต โลก บ้าน น้ำ ใจ คิด พูด เขียน อ่าน หนังสือ โรงเรียน "
    "มหาวิทยาลัย รัฐบาล เศรษฐกิจ สังคม วัฒนธรรม ประวัติศาสตร์ วิทยาศาสตร์ เทคโนโลยี คอมพิวเตอร์ ภาพยนตร์ ดนตรี"
).split()

_T0 = time.perf_counter()


def log(msg: str) -> None:
    """Progress to stderr, so stdout carries only the table."""
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Vocab:
    """Words with Zipf-like frequencies: a few very common words and a long tail, like real text."""

    words: np.ndarray  # dtype object
    cdf: np.ndarray

    @staticmethod
    def zipf(words: Sequence[str]) -> Vocab:
        weights = 1.0 / (np.arange(len(words)) + 2.7)
        cdf = np.cumsum(weights)
        return Vocab(np.array(list(words), dtype=object), cdf / cdf[-1])

    def sample(self, rng: np.random.Generator, k: int) -> list[str]:
        idx = np.minimum(np.searchsorted(self.cdf, rng.random(k), side="right"), len(self.words) - 1)
        return self.words[idx].tolist()


def english_words(n: int) -> list[str]:
    """Common English words, then made-up words of 1-4 syllables: a vocabulary bigger than the tokenizer's."""
    rng = np.random.default_rng(1234)
    words = list(dict.fromkeys(EN_COMMON))
    seen = set(words)
    while len(words) < n:
        syllables = int(rng.integers(1, 5))
        word = "".join(
            ONSETS[rng.integers(len(ONSETS))] + NUCLEI[rng.integers(len(NUCLEI))] + CODAS[rng.integers(len(CODAS))]
            for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def thai_words(n: int) -> tuple[list[str], str]:
    """pythainlp's Thai word list (offline, shipped with the package) in a fixed order, else a small built-in list."""
    try:
        from pythainlp.corpus import thai_words as load

        words = sorted(load())  # a frozenset: sort before shuffling so the order does not depend on PYTHONHASHSEED
        source = "pythainlp.corpus.thai_words()"
    except Exception as e:  # not installed, or its data missing
        log(f"pythainlp unavailable ({type(e).__name__}); using {len(TH_FALLBACK)} built-in Thai words")
        return list(TH_FALLBACK), "built-in list"
    order = np.random.default_rng(4321).permutation(len(words))
    return [words[i] for i in order[:n]], source


def english_line(rng: np.random.Generator, vocab: Vocab, k: int) -> str:
    """A sentence-like line: capitalised, some commas and numbers, a full stop."""
    words = vocab.sample(rng, k)
    for i in np.flatnonzero(rng.random(k) < NUMBER_SHARE):
        words[i] = str(int(rng.integers(0, 100_000)))
    for i in np.flatnonzero(rng.random(k - 1) < COMMA_SHARE):
        words[i] += ","
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def thai_line(rng: np.random.Generator, vocab: Vocab, k: int) -> str:
    """Thai-like: words run together, a space only between phrases."""
    words = vocab.sample(rng, k)
    breaks = [0, *(np.flatnonzero(rng.random(k - 1) < THAI_PHRASE_BREAK) + 1).tolist(), k]
    return " ".join("".join(words[a:b]) for a, b in zip(breaks[:-1], breaks[1:]))


def make_lines(rng: np.random.Generator, n: int, en: Vocab, th: Vocab) -> list[str]:
    """n lines of 1..MAX_WORDS words, mostly short, plus a few paragraph-long ones.

    200 words make at most ~400 tokens with these tokenizers, so without the
    paragraphs no line would overflow a 512-token block and the long-line
    path (ours splits, the original dropped) would go unmeasured.
    """
    thai = rng.random(n) < THAI_SHARE
    lengths = 1 + (rng.random(n) ** 3 * MAX_WORDS).astype(np.int64)  # 1..MAX_WORDS, skewed short
    paragraphs = rng.random(n) < PARAGRAPH_SHARE
    lengths[paragraphs] = rng.integers(*PARAGRAPH_WORDS, endpoint=True, size=int(paragraphs.sum()))
    kind = rng.random(n)
    lines = []
    for is_th, k, u in zip(thai.tolist(), lengths.tolist(), kind.tolist()):
        if u < BLANK_SHARE:
            lines.append("" if u < BLANK_SHARE / 2 else " \t ")  # cleaning must drop both
            continue
        line = thai_line(rng, th, k) if is_th else english_line(rng, en, k)
        if u > 1 - PADDED_SHARE:
            line = f"  {line}\t "  # cleaning must strip this
        lines.append(line)
    return lines


@dataclass
class Corpus:
    dir: Path
    shards: list[Path]
    bytes: int
    thai_source: str

    @property
    def mb(self) -> float:
        return self.bytes / MB


def shard_count(mb: float) -> int:
    """8..16 shards: enough for every core to have work, as a real corpus dir."""
    return int(min(16, max(8, round(mb / 4))))


def make_corpus(out: Path, mb: float, seed: int) -> Corpus:
    """At least ``mb`` MB of text in 8..16 shards, reused when an identical one was built before."""
    n_shards = shard_count(mb)
    d = out / f"corpus_{mb:g}mb_seed{seed}"
    params = {"version": CORPUS_VERSION, "mb": mb, "seed": seed, "shards": n_shards}
    stamp = d / "corpus.json"
    th_list, th_source = thai_words(TH_VOCAB)
    if stamp.is_file() and json.loads(stamp.read_text())["params"] == params:
        shards = sorted(d.glob("*.txt"))
        log(f"corpus {d.name}: reused")
        return Corpus(d, shards, sum(p.stat().st_size for p in shards), json.loads(stamp.read_text())["thai"])
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    en, th = Vocab.zipf(english_words(EN_VOCAB)), Vocab.zipf(th_list)
    per_shard = int(mb * MB / n_shards) + 1
    log(f"corpus {d.name}: writing {n_shards} shards of {per_shard / MB:.1f} MB")
    shards = []
    for k in range(n_shards):
        rng = np.random.default_rng([seed, k])
        path = d / f"shard_{k:03d}.txt"
        written = 0
        with open(path, "wb") as f:
            while written < per_shard:
                chunk = ("\n".join(make_lines(rng, 2000, en, th)) + "\n").encode("utf-8")
                if written + len(chunk) > per_shard:  # stop at the first line end past the target
                    chunk = chunk[: chunk.find(b"\n", per_shard - written - 1) + 1]
                f.write(chunk)
                written += len(chunk)
        shards.append(path)
    stamp.write_text(json.dumps({"params": params, "thai": th_source}))
    return Corpus(d, shards, sum(p.stat().st_size for p in shards), th_source)


def head_bytes(files: Sequence[Path], n: int) -> bytes:
    """About the first n bytes of the files, each file's part cut after its last whole line."""
    parts, left = [], n
    for p in files:
        data = p.read_bytes()[:left]
        data = data[: data.rfind(b"\n") + 1]
        parts.append(data)
        left -= len(data)
        if left <= 0:
            break
    return b"".join(parts)


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- tokenizers


@dataclass
class Tok:
    name: str  # short label for the table
    dir: Path
    description: str


def train_wordpiece(sample: Path, out: Path) -> None:
    """BERT-style WordPiece, saved as a transformers fast tokenizer (the ``tokenizers`` backend path)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)  # keep Thai marks
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train([str(sample)], trainers.WordPieceTrainer(vocab_size=WORDPIECE_VOCAB, special_tokens=specials,
                                                       show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out)


def train_sentencepiece(sample: Path, out: Path, cores: int) -> None:
    """SentencePiece unigram wrapped as a slow transformers tokenizer (the ``sentencepiece`` backend path)."""
    import sentencepiece as spm
    from transformers import BertGenerationTokenizer

    prefix = out.parent / f"{out.name}_spm"
    spm.SentencePieceTrainer.train(
        input=str(sample), model_prefix=str(prefix), vocab_size=SPM_VOCAB, model_type="unigram",
        bos_id=0, pad_id=1, eos_id=2, unk_id=3, user_defined_symbols=["<mask>"],
        input_sentence_size=200_000, shuffle_input_sentence=True, max_sentence_length=32_768,
        num_threads=cores, minloglevel=2,
    )
    BertGenerationTokenizer(vocab_file=f"{prefix}.model", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(out)
    for suffix in (".model", ".vocab"):
        Path(f"{prefix}{suffix}").unlink()


def make_tokenizers(out: Path, corpus: Corpus, cores: int) -> list[Tok]:
    """Both tokenizers, trained on a few MB of the corpus, reused if trained before on the same corpus."""
    from transformers import AutoTokenizer

    root = out / "tokenizers"
    params = {"corpus": str(corpus.dir), "bytes": corpus.bytes, "sample_mb": SAMPLE_MB,
              "wordpiece": WORDPIECE_VOCAB, "spm": SPM_VOCAB}
    stamp = root / "tokenizers.json"
    trainers: dict[str, Callable[[Path, Path], None]] = {
        "wordpiece": train_wordpiece,
        "spm": lambda sample, d: train_sentencepiece(sample, d, cores),
    }
    if not (stamp.is_file() and json.loads(stamp.read_text()) == params):
        shutil.rmtree(root, ignore_errors=True)
        per_shard = SAMPLE_MB * MB // len(corpus.shards)  # from every shard: both tokenizers see all of it
        sample = write_file(root / "sample.txt", b"".join(head_bytes([p], per_shard) for p in corpus.shards))
        for name, train in trainers.items():
            t0 = time.perf_counter()
            train(sample, root / name)
            log(f"tokenizer {name}: trained on {sample.stat().st_size / MB:.1f} MB in {time.perf_counter() - t0:.1f} s")
        sample.unlink()
        stamp.write_text(json.dumps(params))
    toks = []
    for name in trainers:
        tok = AutoTokenizer.from_pretrained(str(root / name), local_files_only=True)  # what our tool will load
        toks.append(Tok(name, root / name, f"{type(tok).__name__}, vocab {len(tok):,}"))
    return toks


# --------------------------------------------------------------------------- ours (the CLI)


class TreeRss:
    """Peak RSS of a process and all its descendants, sampled every RSS_INTERVAL_S in a thread.

    ``peak_sum`` is the most the tree held at once (pages shared after fork
    are counted in each process, so it is an upper bound); ``peak_one`` is the
    largest single process.
    """

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak_sum = self.peak_one = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = []
        for p in procs:
            try:
                rss.append(p.memory_info().rss)
            except psutil.Error:  # exited between listing and reading
                pass
        if rss:
            self.peak_sum = max(self.peak_sum, sum(rss))
            self.peak_one = max(self.peak_one, max(rss))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(RSS_INTERVAL_S)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class CliRun:
    seconds: float  # wall time of the subprocess: interpreter start, imports, hashing, encoding, writing
    summary: str  # the line the CLI printed
    manifest: dict[str, Any]
    rss_sum: int = 0
    rss_one: int = 0

    @property
    def totals(self) -> dict[str, int]:
        return self.manifest["totals"]

    @property
    def content_tokens(self) -> int:
        """Tokens of the text itself: the stream minus one separator per line."""
        return self.totals["tokens"] - self.totals["lines"]


def run_ours(tok: Tok, corpus: Corpus, cache: Path, workers: int, overwrite: bool, logs: Path,
             rss: bool = False) -> CliRun:
    """One run of ``python -m preprocess`` as users run it; stderr (progress bars) goes to a log file."""
    cmd = [sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(tok.dir), "--train_dir",
           str(corpus.dir), "--datasets_cache_dir", str(cache), "--max_seq_length", str(MAX_SEQ_LENGTH),
           "--num_workers", str(workers)]
    if overwrite:
        cmd.append("--overwrite_cache")
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"ours_{tok.name}_{corpus.dir.name}_{'full' if overwrite else 'rerun'}.log"
    with open(log_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
        sampler = TreeRss(proc.pid) if rss else None
        if sampler:
            with sampler:
                out, _ = proc.communicate()
        else:
            out, _ = proc.communicate()
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
    manifest = json.loads((cache / "train" / "manifest.json").read_text())
    run = CliRun(seconds, out.strip(), manifest)
    if sampler:
        run.rss_sum, run.rss_one = sampler.peak_sum, sampler.peak_one
    return run


def best_of(n: int, fn: Callable[[], Any], seconds: Callable[[Any], float]) -> Any:
    """The fastest of n runs: on a shared 2-core VM the minimum is the least noisy estimate."""
    runs = [fn() for _ in range(max(1, n))]
    return min(runs, key=seconds)


# --------------------------------------------------------------------------- pool harness (limit, tokenizer(batch))

_POOL: dict[str, Any] = {}  # the encoder, set in the parent before the fork so every worker inherits it


def _encode_file(path: str) -> tuple[int, int, int]:
    """(bytes, lines, tokens) of one shard: read, clean as ours, encode in batches, keep only the count."""
    from preprocess.encode import clean_lines

    raw = Path(path).read_bytes()
    lines = clean_lines(raw.decode("utf-8", errors="replace"))
    encode = _POOL["encode"]
    tokens = 0
    for i in range(0, len(lines), BATCH_LINES):
        tokens += sum(len(ids) for ids in encode(lines[i : i + BATCH_LINES]))
    return len(raw), len(lines), tokens


@dataclass
class PoolRun:
    seconds: float  # tokenizer load + pool start + every shard encoded
    backend: str
    lines: int
    tokens: int


def pool_encode(tok: Tok, corpus: Corpus, workers: int, backend: str | None) -> PoolRun:
    """Encode every shard in a pool of ``workers`` processes, one shard per task.

    ``backend`` is a key of ``candidate_encoders`` (None: the fastest, i.e.
    the first). Nothing is written, so this bounds what any tool using that
    encoder on these cores can reach.
    """
    import multiprocess
    from transformers import AutoTokenizer

    from preprocess.encode import candidate_encoders

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(tok.dir), local_files_only=True)
    encoders = candidate_encoders(tokenizer)
    backend = backend or next(iter(encoders))
    _POOL["encode"] = encoders[backend]
    with multiprocess.get_context("fork").Pool(workers) as pool:
        results = list(pool.imap_unordered(_encode_file, [str(p) for p in corpus.shards], chunksize=1))
    seconds = time.perf_counter() - t0
    _POOL.clear()
    return PoolRun(seconds, backend, sum(r[1] for r in results), sum(r[2] for r in results))


# --------------------------------------------------------------------------- HF datasets (upstream run_mlm.py)


@dataclass
class DatasetsRun:
    seconds: float  # load_dataset + both maps, measured inside the child (its imports excluded)
    wall: float  # the child process, imports included
    rows: int
    disk_bytes: int  # the whole cache dir: raw Arrow + tokenized + grouped

    @property
    def tokens(self) -> int:
        return self.rows * MAX_SEQ_LENGTH


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def run_datasets(tok: Tok, corpus: Corpus, workers: int, cache: Path, logs: Path) -> DatasetsRun:
    """Upstream's pipeline in a fresh child process with a fresh cache dir, so nothing is reused."""
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    spec = {"tokenizer": str(tok.dir), "files": [str(p) for p in corpus.shards], "workers": workers,
            "cache": str(cache)}
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log_path = logs / f"datasets_{tok.name}.log"
    with open(log_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--hf_datasets_child", json.dumps(spec)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"datasets child exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return DatasetsRun(result["seconds"], wall, result["rows"], dir_bytes(cache))


def hf_datasets_child(spec: dict[str, Any]) -> None:
    """What examples/pytorch/language-modeling/run_mlm.py does without --line_by_line; prints JSON."""
    from itertools import chain

    from datasets import load_dataset
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"], local_files_only=True)
    raw_datasets = load_dataset("text", data_files={"train": spec["files"]}, cache_dir=spec["cache"])
    column_names = list(raw_datasets["train"].features)
    text_column_name = "text" if "text" in column_names else column_names[0]
    max_seq_length = MAX_SEQ_LENGTH

    def tokenize_function(examples):
        return tokenizer(examples[text_column_name], return_special_tokens_mask=True)

    tokenized_datasets = raw_datasets.map(tokenize_function, batched=True, num_proc=spec["workers"],
                                          remove_columns=column_names)

    def group_texts(examples):
        concatenated_examples = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        total_length = (total_length // max_seq_length) * max_seq_length
        return {
            k: [t[i : i + max_seq_length] for i in range(0, total_length, max_seq_length)]
            for k, t in concatenated_examples.items()
        }

    grouped = tokenized_datasets.map(group_texts, batched=True, num_proc=spec["workers"])
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rows": grouped["train"].num_rows}))


# --------------------------------------------------------------------------- the original builder


@dataclass
class OriginalRun:
    seconds: float
    lines: int
    tokens: int  # ids the tokenizer returned, before packing
    dropped: int  # lines longer than a block: the original skipped them
    stored_tokens: int  # ids written: bos/eos/newline included, dropped lines not
    disk_bytes: int


def original_builder(tok: Tok, text_file: Path, out: Path, batch: bool) -> OriginalRun:
    """The old ``MemmapConcatFullSentenceTextDataset`` build, one process, as it was.

    Text-mode ``readline`` + strip, skip empty; encode with transformers
    (``batch=False``: ``tokenizer.encode(line)`` per line; ``batch=True``:
    ``tokenizer(lines, truncation=True, max_length=usable + 1)`` per 2500 lines,
    as thai2transformers' datasets.py); greedy full-sentence packing; a line
    longer than a block is dropped; each chunk's blocks appended with
    ``struct.pack`` as uint32 plus uint32 block offsets.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tok.dir), local_files_only=True)
    usable = MAX_SEQ_LENGTH - 2
    # The original read bos/eos and '▁'/'\n' only; a BERT vocab has none of them and the
    # original would crash there. Fall back to cls/sep and eos as our tool does.
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    vocab = tokenizer.get_vocab()
    newline = vocab.get("▁", vocab.get("\n", eos))

    def encode(lines: list[str]) -> list[list[int]]:
        if batch:
            return tokenizer(lines, add_special_tokens=False, truncation=True, max_length=usable + 1)["input_ids"]
        return [tokenizer.encode(line, add_special_tokens=False) for line in lines]

    out.mkdir(parents=True, exist_ok=True)
    arr, idx = out / "arr.dat", out / "idx_arr.dat"
    arr.unlink(missing_ok=True)
    idx.unlink(missing_ok=True)
    state = {"offset": 0, "stored": 0, "dropped": 0, "lines": 0, "tokens": 0}
    block: list[int] = []

    def append(blocks: list[list[int]]) -> None:
        with open(arr, "ab") as fa, open(idx, "ab") as fi:
            if fi.tell() == 0:
                fi.write(struct.pack("<I", 0))
            for b in blocks:
                fa.write(struct.pack(f"<{len(b)}I", *b))
                state["offset"] += len(b)
                fi.write(struct.pack("<I", state["offset"]))
        state["stored"] += sum(len(b) for b in blocks)

    def pack(chunk: list[str]) -> None:
        nonlocal block
        blocks: list[list[int]] = []
        for ids in encode(chunk):
            state["tokens"] += len(ids)
            if block and len(block) + 1 + len(ids) > usable:
                blocks.append([bos, *block, eos])
                block = []
            if block:
                block.append(newline)
                block.extend(ids)
            elif len(ids) > usable:
                state["dropped"] += 1
            else:
                block = list(ids)
        state["lines"] += len(chunk)
        append(blocks)

    t0 = time.perf_counter()
    chunk: list[str] = []
    with open(text_file, encoding="utf-8") as f:
        for line in _readline_clean_and_strip(f):
            chunk.append(line)
            if len(chunk) >= ORIGINAL_CHUNK:
                pack(chunk)
                chunk = []
    if chunk:
        pack(chunk)
    if block:
        append([block])  # the original appended its last block without bos/eos
    seconds = time.perf_counter() - t0
    return OriginalRun(seconds, state["lines"], state["tokens"], state["dropped"], state["stored"],
                       arr.stat().st_size + idx.stat().st_size)


def _readline_clean_and_strip(f: Any) -> Iterator[str]:
    """thai2transformers.helper._readline_clean_and_strip: stripped non-empty lines."""
    while line := f.readline():
        line = line.strip()
        if line and not line.isspace():
            yield line


# --------------------------------------------------------------------------- table


@dataclass
class Row:
    measurement: str
    tokenizer: str
    input: str
    seconds: float | None = None
    mb: float | None = None  # input MB, for MB/s
    tokens: int | None = None  # content tokens, for tok/s
    other: str = ""
    verdict: str = ""

    def cells(self) -> list[str]:
        speed = self.seconds is not None and self.seconds > 0
        return [
            self.measurement,
            self.tokenizer,
            self.input,
            f"{self.seconds:.2f}" if self.seconds is not None else "",
            f"{self.mb / self.seconds:.2f}" if speed and self.mb else "",
            f"{self.tokens / self.seconds / 1e6:.3f}" if speed and self.tokens else "",
            self.other,
            self.verdict,
        ]


HEADER = ["measurement", "tokenizer", "input", "wall s", "MB/s", "M tok/s", "other", "ratio (target)"]


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def verdict(value: float, ok: bool, text: str) -> str:
    return f"{text} = {value:.3g} {'ok' if ok else 'MISSED'}"


def speedup(ours_s_per_mb: float, other_s_per_mb: float) -> float:
    return other_s_per_mb / ours_s_per_mb


def machine_facts(cores: int) -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor() or "unknown")
    import datasets
    import sentencepiece
    import tokenizers
    import transformers

    return (f"{cores} cores ({model}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"Python {platform.python_version()}, transformers {transformers.__version__}, "
            f"tokenizers {tokenizers.__version__}, sentencepiece {sentencepiece.__version__}, "
            f"datasets {datasets.__version__}")


# --------------------------------------------------------------------------- main


@dataclass
class Disk:
    """One cache's size per token it stores, for the disk rows at the end of the table."""

    what: str
    tokenizer: str
    bytes: int
    tokens: int
    detail: str


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    disk: list[Disk] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def bench_tokenizer(tok: Tok, corpus: Corpus, args: argparse.Namespace, res: Results) -> CliRun:
    """Ours, its limit, tokenizer(batch) and a no-op rerun for one tokenizer; returns our full run."""
    out, cores = args.out, args.workers
    cache = out / "cache" / tok.name
    inp = f"{corpus.mb:.1f} MB"
    log(f"{tok.name}: ours, full build x{args.repeat}")
    ours = best_of(args.repeat, lambda: run_ours(tok, corpus, cache, cores, True, out / "logs"), lambda r: r.seconds)
    tokens = ours.content_tokens
    enc = ours.manifest["tokenizer"]["encoder"]
    res.rows.append(Row(f"ours, all cores ({cores} workers)", tok.name, inp, ours.seconds, corpus.mb, tokens,
                        f"encoder {enc}; {ours.summary.split(', ')[-1]} inside; best of {args.repeat}"))
    log(f"{tok.name}: ours {ours.seconds:.1f} s: {ours.summary}")

    log(f"{tok.name}: backend limit x{args.repeat}")
    limit = best_of(args.repeat, lambda: pool_encode(tok, corpus, cores, None), lambda r: r.seconds)
    ratio = limit.seconds / ours.seconds
    res.rows.append(Row(f"backend limit, all cores ({limit.backend}, encode only)", tok.name, inp, limit.seconds,
                        corpus.mb, limit.tokens, f"best of {args.repeat}",
                        verdict(ratio, ratio >= 0.9, "ours/limit (≥ 0.9)")))
    if limit.tokens != tokens or limit.lines != ours.totals["lines"] + ours.totals["lines_without_tokens"]:
        res.notes.append(f"{tok.name}: limit counted {limit.tokens:,} tokens / {limit.lines:,} lines, ours "
                         f"{tokens:,} / {ours.totals['lines']:,}: they should be equal")

    log(f"{tok.name}: transformers tokenizer(batch)")
    plain = pool_encode(tok, corpus, cores, "transformers")
    res.rows.append(Row("transformers tokenizer(batch), all cores (encode only)", tok.name, inp, plain.seconds,
                        corpus.mb, plain.tokens, "", f"ours {plain.seconds / ours.seconds:.2f}x faster"))

    log(f"{tok.name}: ours, no-op rerun")
    rerun = run_ours(tok, corpus, cache, cores, False, out / "logs")
    ratio = rerun.seconds / ours.seconds
    res.rows.append(Row("ours, rerun on unchanged input", tok.name, inp, rerun.seconds, None, None,
                        rerun.summary.split(": ", 1)[1].split(";")[0],
                        verdict(ratio, ratio <= 0.05, "rerun/full (≤ 0.05)")))
    return ours


def bench_datasets(tok: Tok, corpus: Corpus, ours: CliRun, args: argparse.Namespace, res: Results) -> None:
    log(f"{tok.name}: HF datasets map + group_texts")
    run = run_datasets(tok, corpus, args.workers, args.out / "hf_cache" / tok.name, args.out / "logs")
    faster = run.seconds / ours.seconds
    res.rows.append(Row(f"HF datasets map + group_texts, num_proc={args.workers}", tok.name, f"{corpus.mb:.1f} MB",
                        run.seconds, corpus.mb, ours.content_tokens,
                        f"timed in its process; its wall with imports {run.wall:.1f} s",
                        verdict(faster, faster >= 3, "ours faster by (≥ 3x)")))
    res.disk.append(Disk("HF datasets cache dir (raw + tokenized + grouped Arrow)", tok.name, run.disk_bytes,
                         run.tokens, f"{run.rows:,} rows x {MAX_SEQ_LENGTH}"))


def bench_original(tok: Tok, subset: Path, ours: CliRun, corpus: Corpus, args: argparse.Namespace,
                   res: Results) -> None:
    mb = subset.stat().st_size / MB
    ours_s_per_mb = ours.seconds / corpus.mb
    for batch in (False, True):
        how = "tokenizer(2500 lines), as thai2transformers" if batch else "tokenizer.encode per line"
        log(f"{tok.name}: original builder, {how}")
        run = original_builder(tok, subset, args.out / "original" / tok.name, batch)
        res.rows.append(Row(f"original builder, 1 process, {how}", tok.name, f"{mb:.1f} MB subset", run.seconds, mb,
                            run.tokens, f"{run.dropped:,} of {run.lines:,} lines dropped (longer than a block)",
                            f"ours faster by {speedup(ours_s_per_mb, run.seconds / mb):.1f}x (MB/s)"))
    res.disk.append(Disk("original builder (uint32 ids + uint32 block offsets)", tok.name, run.disk_bytes,
                         run.stored_tokens, f"{mb:.1f} MB subset"))


def bench_rss(tok: Tok, small: Corpus, big: Corpus, args: argparse.Namespace, res: Results) -> None:
    runs = []
    for corpus in (small, big):
        log(f"{tok.name}: peak RSS on {corpus.mb:.0f} MB")
        run = run_ours(tok, corpus, args.out / "cache" / f"rss_{corpus.dir.name}", args.workers, True,
                       args.out / "logs", rss=True)
        runs.append(run)
        per_shard = corpus.mb / len(corpus.shards)
        verdict_text = ""
        if corpus is big:
            ratio = run.rss_sum / runs[0].rss_sum
            verdict_text = verdict(ratio, ratio <= 1.15, f"{big.mb:.0f} MB/{small.mb:.0f} MB (~1.0)")
        res.rows.append(Row("ours, peak RSS of the process tree", tok.name,
                            f"{corpus.mb:.1f} MB ({len(corpus.shards)} x {per_shard:.1f} MB)", run.seconds, corpus.mb,
                            run.content_tokens,
                            f"tree {run.rss_sum / MIB:.0f} MiB, largest process {run.rss_one / MIB:.0f} MiB",
                            verdict_text))


def bench_disk(ours: dict[str, CliRun], res: Results) -> None:
    """Bytes per stored token: ours (manifest disk_bytes / tokens) against every other cache, per tokenizer."""
    for name, run in ours.items():
        t = run.totals
        mine = t["disk_bytes"] / t["tokens"]
        res.rows.append(Row("disk: ours (tokens + lines + blocks .npy)", name, f"{t['tokens']:,} tokens", None, None,
                            None, f"{t['disk_bytes'] / MB:.1f} MB = {mine:.2f} B/token ({run.manifest['tokenizer']['dtype']} ids)",
                            f"original's nominal 4 B/token = {4 / mine:.2f}x ours"))
        for d in (d for d in res.disk if d.tokenizer == name):
            per = d.bytes / d.tokens
            res.rows.append(Row(f"disk: {d.what}", name, f"{d.tokens:,} tokens ({d.detail})", None, None, None,
                                f"{d.bytes / MB:.1f} MB = {per:.2f} B/token", f"{per / mine:.2f}x ours"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=50, help="corpus size for the throughput rows (MB)")
    p.add_argument("--rss_mb", type=float, default=200, help="bigger corpus for the peak-RSS row (MB)")
    p.add_argument("--original_mb", type=float, default=5, help="subset the slow original builder runs on (MB)")
    p.add_argument("--out", type=Path, default=Path("bench_out"), help="work dir (corpora, tokenizers, caches)")
    p.add_argument("--workers", type=int, default=None, help="processes for every parallel row (default: all cores)")
    p.add_argument("--repeat", type=int, default=2, help="runs of ours and of the limit; the fastest is kept")
    p.add_argument("--skip_datasets", action="store_true", help="skip the HF datasets rows")
    p.add_argument("--skip_original", action="store_true", help="skip the original builder rows")
    p.add_argument("--hf_datasets_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    if args.workers is None:
        from preprocess.config import available_cores

        args.workers = available_cores()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hf_datasets_child:
        hf_datasets_child(json.loads(args.hf_datasets_child))
        return 0
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(args.out, args.mb, seed=0)
    big = make_corpus(args.out, args.rss_mb, seed=1)
    toks = make_tokenizers(args.out, corpus, args.workers)
    res = Results()
    ours = {tok.name: bench_tokenizer(tok, corpus, args, res) for tok in toks}
    if not args.skip_original:
        subset = write_file(args.out / "original" / "subset.txt", head_bytes(corpus.shards, int(args.original_mb * MB)))
        for tok in toks:
            bench_original(tok, subset, ours[tok.name], corpus, args, res)
    if not args.skip_datasets:
        for tok in toks:
            bench_datasets(tok, corpus, ours[tok.name], args, res)
    bench_rss(toks[0], corpus, big, args, res)
    bench_disk(ours, res)

    any_run = next(iter(ours.values()))
    head = [
        "# preprocess benchmark",
        "",
        f"- machine: {machine_facts(args.workers)}",
        f"- corpus: {corpus.mb:.1f} MB in {len(corpus.shards)} shards, {any_run.totals['lines']:,} non-empty lines "
        f"({THAI_SHARE:.0%} Thai-like from {corpus.thai_source}, 1-{MAX_WORDS} words/line, {PARAGRAPH_SHARE:.0%} "
        f"paragraphs of {PARAGRAPH_WORDS[0]}-{PARAGRAPH_WORDS[1]} words); RSS corpus "
        f"{big.mb:.1f} MB in {len(big.shards)} shards; max_seq_length {MAX_SEQ_LENGTH}; MB = 10^6 bytes",
        *(f"- {tok.name} ({tok.description}): {ours[tok.name].content_tokens:,} tokens, "
          f"{ours[tok.name].totals['blocks']:,} blocks, {ours[tok.name].totals['lines_split']:,} lines longer "
          f"than a block" for tok in toks),
        "- M tok/s counts the text's tokens (ours' stream minus one separator per line) for every row; "
        "wall s of ours is the whole subprocess (interpreter start and imports included); the datasets row "
        "is timed inside its process (imports excluded)",
        *(f"- NOTE: {n}" for n in res.notes),
        "",
    ]
    text = "\n".join(head) + markdown(res.rows) + f"\n\nbench wall time: {time.perf_counter() - start:.0f} s\n"
    print(text)
    (args.out / "preprocess.md").write_text(text)
    log(f"done in {time.perf_counter() - start:.0f} s; table in {args.out / 'preprocess.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
