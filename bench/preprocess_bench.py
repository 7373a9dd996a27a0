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
* a no-op rerun, ours and the limit on a 4x bigger corpus (throughput at
  scale, peak RSS), and bytes per token on disk.

The machine may be shared: every timed row also shows how many cores other
processes kept busy meanwhile (system CPU time minus this tree's), so a
noisy number can be told from a slow one. Training the tokenizers and the
``datasets`` pipeline run in child processes, so this process forks its
pools from a clean state.

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
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout too (a GPU node), not only where the project is installed

from bench.tree_rss import TreeRss  # noqa: E402

MB = 1_000_000  # every MB and MB/s in the table is 10**6 bytes
MIB = 1 << 20
MAX_SEQ_LENGTH = 512
BATCH_LINES = 1024  # lines per encode call in the pool harness, as preprocess/encode.py does
ORIGINAL_CHUNK = 2500  # thai2transformers' tokenize_chunksize default
NOISE_CORES = 0.3  # other processes used more CPU than this during a measurement: it is taken again
NOISE_TRIES = 3
QUIET_WAIT_S = 60  # before each try, wait up to this long for the other processes to calm down
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
    if stamp.is_file() and json.loads(stamp.read_text())["params"] == params:
        shards = sorted(d.glob("*.txt"))
        log(f"corpus {d.name}: reused")
        return Corpus(d, shards, sum(p.stat().st_size for p in shards), json.loads(stamp.read_text())["thai"])
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    th_list, th_source = thai_words(TH_VOCAB)
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


# --------------------------------------------------------------------------- measuring


@dataclass
class CpuClock:
    """Wall time, the machine's busy CPU time and this process tree's CPU time, at one moment."""

    wall: float
    busy: float
    mine: float

    @staticmethod
    def now() -> CpuClock:
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + sum(getattr(t, f, 0.0) for f in ("irq", "softirq", "steal"))
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return CpuClock(time.perf_counter(), busy, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)


@dataclass
class Timed:
    seconds: float
    others: float  # cores other processes (or the hypervisor, as steal) kept busy meanwhile


class Stopwatch:
    """Times a block and measures the CPU others used meanwhile: on a shared box, noise shows up there.

    Our own CPU is ``RUSAGE_SELF + RUSAGE_CHILDREN``, so children count once
    waited for: every subprocess and pool here is, before the block ends.
    """

    time: Timed

    def __enter__(self) -> Stopwatch:
        self._start = CpuClock.now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = CpuClock.now()
        wall = end.wall - self._start.wall
        others = (end.busy - self._start.busy) - (end.mine - self._start.mine)
        self.time = Timed(wall, max(0.0, others) / wall if wall > 0 else 0.0)


R = TypeVar("R")


def wait_for_quiet(timeout: float) -> float:
    """Wait up to ``timeout`` s until the machine is nearly idle (we are, between measurements); the last reading.

    Returns the cores in use during the last second.
    """
    deadline = time.perf_counter() + timeout
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100 * (psutil.cpu_count() or 1)
        if busy <= NOISE_CORES or time.perf_counter() >= deadline:
            return busy


def settled(fn: Callable[[], R], what: str) -> R:
    """``fn()`` again while other processes disturbed it (> NOISE_CORES), at most NOISE_TRIES runs; the calmest.

    Each try first waits for a quiet second. ``fn`` returns a result with a ``time: Timed``.
    """
    runs = []
    for _ in range(NOISE_TRIES):
        wait_for_quiet(QUIET_WAIT_S)
        runs.append(fn())
        others = runs[-1].time.others  # type: ignore[attr-defined]
        if others <= NOISE_CORES:
            break
        log(f"{what}: other processes used {others:.2f} cores meanwhile; measuring again")
    return min(runs, key=lambda r: r.time.others)  # type: ignore[attr-defined]


def run_child(spec: dict[str, Any], log_path: Path, env: dict[str, str] | None = None) -> tuple[dict[str, Any], Timed]:
    """One task of this script (``--child``) in a fresh interpreter; its last stdout line is its JSON result."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as err, Stopwatch() as sw:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=err, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['task']} exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), sw.time


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
    trainer = trainers.WordPieceTrainer(vocab_size=WORDPIECE_VOCAB, special_tokens=specials, show_progress=False)
    tok.train([str(sample)], trainer)
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


def train_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one tokenizer (in a child: trainer threads must not live in the process that forks the pools)."""
    t0 = time.perf_counter()
    if spec["kind"] == "wordpiece":
        train_wordpiece(Path(spec["sample"]), Path(spec["out"]))
    else:
        train_sentencepiece(Path(spec["sample"]), Path(spec["out"]), spec["cores"])
    return {"seconds": time.perf_counter() - t0}


TOKENIZER_KINDS = ("wordpiece", "spm")


def make_tokenizers(out: Path, corpus: Corpus, cores: int) -> list[Tok]:
    """Both tokenizers, trained on a few MB of the corpus; reused if trained before on the same corpus."""
    from transformers import AutoTokenizer

    root = out / "tokenizers"
    params = {"corpus": str(corpus.dir), "bytes": corpus.bytes, "sample_mb": SAMPLE_MB,
              "wordpiece": WORDPIECE_VOCAB, "spm": SPM_VOCAB}
    stamp = root / "tokenizers.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == params):
        shutil.rmtree(root, ignore_errors=True)
        per_shard = SAMPLE_MB * MB // len(corpus.shards)  # a part of every shard: the tokenizers see all of it
        sample = write_file(root / "sample.txt", b"".join(head_bytes([p], per_shard) for p in corpus.shards))
        for kind in TOKENIZER_KINDS:
            spec = {"task": "train", "kind": kind, "sample": str(sample), "out": str(root / kind), "cores": cores}
            result, _ = run_child(spec, out / "logs" / f"train_{kind}.log")
            log(f"tokenizer {kind}: trained on {sample.stat().st_size / MB:.1f} MB in {result['seconds']:.1f} s")
        sample.unlink()
        stamp.write_text(json.dumps(params))
    toks = []
    for kind in TOKENIZER_KINDS:
        tok = AutoTokenizer.from_pretrained(str(root / kind), local_files_only=True)  # as our tool loads it
        toks.append(Tok(kind, root / kind, f"{type(tok).__name__}, vocab {len(tok):,}"))
    return toks


# --------------------------------------------------------------------------- ours (the CLI)


@dataclass
class CliRun:
    time: Timed  # the subprocess: interpreter start, imports, hashing, encoding, writing
    summary: str  # the line the CLI printed
    manifest: dict[str, Any]
    rss_sum: int = 0
    rss_one: int = 0
    pss_sum: int = 0

    @property
    def seconds(self) -> float:
        return self.time.seconds

    @property
    def totals(self) -> dict[str, int]:
        return self.manifest["totals"]

    @property
    def content_tokens(self) -> int:
        """Tokens of the text itself: the stream minus one separator per line."""
        return self.totals["tokens"] - self.totals["lines"]

    @property
    def inside(self) -> str:
        """The seconds the CLI reports for its own work (after its imports), e.g. '8.9 s'."""
        return self.summary.rsplit(", ", 1)[-1]


def run_ours(tok: Tok, corpus: Corpus, cache: Path, workers: int, overwrite: bool, logs: Path,
             rss: bool = False, extra: Sequence[str] = ()) -> CliRun:
    """One run of ``python -m preprocess`` as users run it; stderr (progress bars) goes to a log file."""
    cmd = [sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(tok.dir), "--train_dir",
           str(corpus.dir), "--datasets_cache_dir", str(cache), "--max_seq_length", str(MAX_SEQ_LENGTH),
           "--num_workers", str(workers), *extra]
    if overwrite:
        cmd.append("--overwrite_cache")
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"ours_{tok.name}_{corpus.dir.name}_{'full' if overwrite else 'rerun'}{''.join(extra)}.log"
    with open(log_path, "w") as err, Stopwatch() as sw:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
        sampler = TreeRss(proc.pid) if rss else None
        with sampler or nullcontext():
            out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
    run = CliRun(sw.time, out.strip(), json.loads((cache / "train" / "manifest.json").read_text()))
    if sampler:
        run.rss_sum, run.rss_one, run.pss_sum = sampler.peak_sum, sampler.peak_one, sampler.peak_pss
    return run


def tiny_corpus(out: Path) -> Corpus:
    """One line of text: a full build of it costs what every build pays before and after the work itself."""
    d = out / "corpus_one_line"
    path = write_file(d / "one.txt", "Hello world. สวัสดีครับ\n".encode())
    return Corpus(d, [path], path.stat().st_size, "built-in")


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
    time: Timed  # tokenizer load + pool start + every shard encoded
    backend: str
    lines: int
    tokens: int

    @property
    def seconds(self) -> float:
        return self.time.seconds


def pool_encode(tok: Tok, corpus: Corpus, workers: int, backend: str | None) -> PoolRun:
    """Encode every shard in a pool of ``workers`` processes, one shard per task.

    ``backend`` is a key of ``candidate_encoders`` (None: the fastest, i.e.
    the first). Nothing is written or packed, so this bounds what any tool
    using that encoder on these cores can reach.
    """
    import multiprocess
    from transformers import AutoTokenizer

    from preprocess.encode import candidate_encoders

    with Stopwatch() as sw:
        tokenizer = AutoTokenizer.from_pretrained(str(tok.dir), local_files_only=True)
        encoders = candidate_encoders(tokenizer)
        backend = backend or next(iter(encoders))
        _POOL["encode"] = encoders[backend]
        with multiprocess.get_context("fork").Pool(workers) as pool:
            results = list(pool.imap_unordered(_encode_file, [str(p) for p in corpus.shards], chunksize=1))
    _POOL.clear()
    return PoolRun(sw.time, backend, sum(r[1] for r in results), sum(r[2] for r in results))


# --------------------------------------------------------------------------- HF datasets (upstream run_mlm.py)


@dataclass
class DatasetsRun:
    time: Timed  # the child process, its imports included
    seconds: float  # load_dataset + both maps, timed inside the child (imports excluded)
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
    spec = {"task": "hf_datasets", "tokenizer": str(tok.dir), "files": [str(p) for p in corpus.shards],
            "workers": workers, "cache": str(cache)}
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result, timed = run_child(spec, logs / f"datasets_{tok.name}.log", env)
    return DatasetsRun(timed, result["seconds"], result["rows"], dir_bytes(cache))


def hf_datasets_child(spec: dict[str, Any]) -> dict[str, Any]:
    """What examples/pytorch/language-modeling/run_mlm.py does without --line_by_line."""
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

    tokenized_datasets = raw_datasets.map(
        tokenize_function, batched=True, num_proc=spec["workers"], remove_columns=column_names
    )

    def group_texts(examples):
        concatenated_examples = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        total_length = (total_length // max_seq_length) * max_seq_length
        return {
            k: [t[i : i + max_seq_length] for i in range(0, total_length, max_seq_length)]
            for k, t in concatenated_examples.items()
        }

    grouped = tokenized_datasets.map(group_texts, batched=True, num_proc=spec["workers"])
    return {"seconds": time.perf_counter() - t0, "rows": grouped["train"].num_rows}


# --------------------------------------------------------------------------- the original builder


@dataclass
class OriginalRun:
    time: Timed  # the build only: tokenizer already loaded, as the original got it passed in
    input_bytes: int
    lines: int
    tokens: int  # ids the tokenizer returned, before packing
    dropped: int  # lines longer than a block: the original skipped them
    stored_tokens: int  # ids written: bos/eos/newline included, dropped lines not
    disk_bytes: int

    @property
    def seconds(self) -> float:
        return self.time.seconds


class OriginalWriter:
    """``MemmapIndexDataset.add``: per chunk, reopen both files and append uint32s with ``struct.pack``."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.arr, self.idx = out / "arr.dat", out / "idx_arr.dat"
        self.arr.unlink(missing_ok=True)
        self.idx.unlink(missing_ok=True)
        self.offset = 0

    def add(self, blocks: list[list[int]]) -> None:
        with open(self.arr, "ab") as fa, open(self.idx, "ab") as fi:
            if fi.tell() == 0:
                fi.write(struct.pack("<I", 0))
            for b in blocks:
                fa.write(struct.pack(f"<{len(b)}I", *b))
                self.offset += len(b)
                fi.write(struct.pack("<I", self.offset))

    @property
    def disk_bytes(self) -> int:
        return self.arr.stat().st_size + self.idx.stat().st_size


def original_builder(tok: Tok, text_file: Path, out: Path, batch: bool) -> OriginalRun:
    """The old ``MemmapConcatFullSentenceTextDataset`` build, one process, as it was.

    Text-mode ``readline`` + strip, skip empty; encode with transformers
    (``batch=False``: ``tokenizer.encode(line)`` per line; ``batch=True``:
    ``tokenizer(lines, truncation=True, max_length=usable + 1)`` per 2500
    lines, as thai2transformers' datasets.py); greedy full-sentence packing
    with a newline id between lines; a line longer than a block is dropped.
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

    writer = OriginalWriter(out)
    n = {"lines": 0, "tokens": 0, "dropped": 0, "stored": 0}
    block: list[int] = []

    def pack(chunk: list[str]) -> None:
        nonlocal block
        blocks: list[list[int]] = []
        for ids in encode(chunk):
            n["tokens"] += len(ids)
            if block and len(block) + 1 + len(ids) > usable:
                blocks.append([bos, *block, eos])
                block = []
            if block:
                block.append(newline)
                block.extend(ids)
            elif len(ids) > usable:
                n["dropped"] += 1
            else:
                block = list(ids)
        n["lines"] += len(chunk)
        n["stored"] += sum(len(b) for b in blocks)
        writer.add(blocks)

    with Stopwatch() as sw:
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
            writer.add([block])  # the original appended its last block without bos/eos
            n["stored"] += len(block)
    return OriginalRun(sw.time, text_file.stat().st_size, n["lines"], n["tokens"], n["dropped"], n["stored"],
                       writer.disk_bytes)


def _readline_clean_and_strip(f: Any) -> Iterator[str]:
    """thai2transformers.helper._readline_clean_and_strip: stripped non-empty lines."""
    while line := f.readline():
        line = line.strip()
        if line and not line.isspace():
            yield line


# --------------------------------------------------------------------------- running it all


@dataclass
class TokResults:
    """Everything measured with one tokenizer."""

    tok: Tok
    ours: CliRun  # fastest full build on the main corpus
    limit: PoolRun  # fastest limit run on the main corpus
    plain: PoolRun  # tokenizer(batch) in the same pool
    rerun: CliRun
    fixed: CliRun  # a full build of a one-line corpus: start-up, imports, tokenizer load, pool, manifest
    rss_small: CliRun  # a full build on the main corpus, RSS sampled
    big_ours: CliRun  # a full build on the big corpus, RSS sampled
    big_small_tasks: CliRun  # the same with tasks as big as the main corpus's shards, RSS sampled
    big_limit: PoolRun
    original: dict[str, OriginalRun] = field(default_factory=dict)
    datasets: DatasetsRun | None = None


ORIGINAL_VARIANTS = {"tokenizer.encode per line": False, "tokenizer(2500 lines), as thai2transformers": True}


def bench_tokenizer(tok: Tok, corpus: Corpus, big: Corpus, subset: Path | None, args: argparse.Namespace) -> TokResults:
    """Every measurement for one tokenizer. Ours and the limit alternate, so a burst of load hits both."""
    out, cores, logs = args.out, args.workers, args.out / "logs"
    cache = out / "cache" / tok.name
    ours_runs, limit_runs = [], []
    for i in range(max(1, args.repeat)):
        log(f"{tok.name}: ours, full build ({i + 1}/{args.repeat})")
        ours_runs.append(settled(lambda: run_ours(tok, corpus, cache, cores, True, logs), "ours"))
        log(f"{tok.name}: ours {ours_runs[-1].seconds:.1f} s: {ours_runs[-1].summary}")
        log(f"{tok.name}: backend limit ({i + 1}/{args.repeat})")
        limit_runs.append(settled(lambda: pool_encode(tok, corpus, cores, None), "limit"))
        log(f"{tok.name}: limit {limit_runs[-1].seconds:.1f} s")
    log(f"{tok.name}: transformers tokenizer(batch)")
    plain = settled(lambda: pool_encode(tok, corpus, cores, "transformers"), "tokenizer(batch)")
    log(f"{tok.name}: ours, no-op rerun; fixed cost")
    rerun = settled(lambda: run_ours(tok, corpus, cache, cores, False, logs), "rerun")
    fixed = settled(lambda: run_ours(tok, tiny_corpus(out), out / "cache" / f"tiny_{tok.name}", cores, True, logs),
                    "fixed cost")
    log(f"{tok.name}: ours with RSS sampled on {corpus.mb:.0f} MB and {big.mb:.0f} MB; limit on {big.mb:.0f} MB")
    same_tasks = ["--task_size_mb", f"{corpus.bytes / len(corpus.shards) / MIB:.2f}"]  # the flag is in MiB
    rss_runs = [
        settled(lambda c=c, x=x: run_ours(tok, c, out / "cache" / f"rss_{tok.name}_{c.dir.name}", cores, True, logs,
                                          rss=True, extra=x), "ours, RSS sampled")
        for c, x in ((corpus, []), (big, []), (big, same_tasks))
    ]
    big_limit = settled(lambda: pool_encode(tok, big, cores, None), "limit, big corpus")
    res = TokResults(tok, min(ours_runs, key=lambda r: r.seconds), min(limit_runs, key=lambda r: r.seconds), plain,
                     rerun, fixed, *rss_runs, big_limit)
    if subset is not None:
        for how, batch in ORIGINAL_VARIANTS.items():
            log(f"{tok.name}: original builder, {how}")
            res.original[how] = settled(
                lambda b=batch: original_builder(tok, subset, out / "original" / tok.name, b), "original"
            )
    if not args.skip_datasets:
        log(f"{tok.name}: HF datasets map + group_texts")
        res.datasets = settled(lambda: run_datasets(tok, corpus, cores, out / "hf_cache" / tok.name, logs), "datasets")
    return res


# --------------------------------------------------------------------------- word-level Thai


def thai_corpus(d: Path, mb: float, shards: int, copies: int) -> Corpus:
    """Thai-only text (words run together, a space between phrases) of ``mb`` MB in ``shards`` shards,
    then ``copies`` copies of those shards: the shape the word-level rows are measured on."""
    rng = np.random.default_rng(7)
    th = Vocab.zipf(thai_words(TH_VOCAB)[0])
    base = []
    for _ in range(shards):
        lines, size = [], 0
        while size < mb * MB / shards:
            line = thai_line(rng, th, int(rng.integers(3, 60)))
            lines.append(line)
            size += len(line.encode()) + 1
        base.append(("\n".join(lines) + "\n").encode())
    paths = [write_file(d / f"c{c}_shard_{k:02d}.txt", data) for c in range(copies) for k, data in enumerate(base)]
    return Corpus(d, paths, sum(p.stat().st_size for p in paths), "pythainlp.corpus.thai_words()")


def word_level_rows(args: argparse.Namespace) -> list[Row]:
    """The users' ThaiWordsNewmmTokenizer (slow Python segmentation): 1 worker against ``--workers``.

    ``--word_mb`` of Thai text in 6 shards, ``--word_copies`` times over; the
    vocabulary is trained with our own train-tokenizer command. The two
    worker counts alternate (1, n, n, 1, ...) ``--repeat`` times each and the
    fastest run of each counts: the 1-worker time varied most between runs.
    """
    root = args.out / "word_level"
    shutil.rmtree(root, ignore_errors=True)
    sub = thai_corpus(root / "text", args.word_mb, 6, args.word_copies)
    tok_dir = root / "newmm"
    log("newmm: training the word-level vocabulary")
    subprocess.run([sys.executable, "-m", "preprocess.train_tokenizer", "--type", "newmm", "--train_dir",
                    str(sub.dir), "--output_dir", str(tok_dir), "--min_frequency", "2", "--num_workers",
                    str(args.workers)], cwd=REPO, check=True, capture_output=True)
    tok = Tok("newmm", tok_dir, "ThaiWordsNewmmTokenizer")
    runs: dict[int, list[CliRun]] = {1: [], args.workers: []}
    for rep in range(args.repeat):
        for workers in (1, args.workers) if rep % 2 == 0 else (args.workers, 1):
            log(f"newmm: ours with {workers} worker(s), run {rep + 1}")
            runs[workers].append(settled(lambda w=workers: run_ours(
                tok, sub, root / f"cache{w}", w, True, args.out / "logs", extra=["--tokenizer_type", "newmm"]),
                "newmm"))
    one = min(runs[1], key=lambda r: r.seconds)
    many = min(runs[args.workers], key=lambda r: r.seconds)
    speedup = one.seconds / many.seconds
    each = ", ".join(f"{r.seconds:.1f}" for r in runs[1]) + " vs " + ", ".join(f"{r.seconds:.1f}" for r in runs[args.workers])
    return [
        Row("ours, word-level Thai (newmm, native encoder), 1 worker", "newmm", size(sub), one.seconds, sub.mb,
            one.content_tokens, one.time.others, f"fastest of {len(runs[1])}"),
        Row(f"ours, word-level Thai (newmm, native encoder), {args.workers} workers", "newmm", size(sub),
            many.seconds, sub.mb, many.content_tokens, many.time.others, f"runs (s): {each}",
            check(speedup, speedup >= 0.9 * args.workers, f"speed-up on {args.workers} cores (≥ {0.9 * args.workers:.1f})")),
    ]


# --------------------------------------------------------------------------- table


@dataclass
class Row:
    measurement: str
    tokenizer: str
    input: str
    seconds: float | None = None
    mb: float | None = None  # input MB, for MB/s
    tokens: int | None = None  # the text's tokens, for tok/s
    others: float | None = None  # cores other processes used meanwhile
    notes: str = ""
    ratio: str = ""

    def cells(self) -> list[str]:
        rate = self.seconds is not None and self.seconds > 0
        return [
            self.measurement,
            self.tokenizer,
            self.input,
            f"{self.seconds:.2f}" if self.seconds is not None else "",
            f"{self.mb / self.seconds:.2f}" if rate and self.mb else "",
            f"{self.tokens / self.seconds / 1e6:.3f}" if rate and self.tokens else "",
            f"{self.others:.2f}" if self.others is not None else "",
            self.notes,
            self.ratio,
        ]


HEADER = ["measurement", "tokenizer", "input", "wall s", "MB/s", "M tok/s", "others' cores", "notes",
          "ratio (target)"]


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r.cells()) + " |" for r in rows])


def check(value: float, ok: bool, what: str) -> str:
    return f"{what} = {value:.3g} {'ok' if ok else 'MISSED'}"


def rss_text(run: CliRun) -> str:
    return (f"peak RSS: tree {run.rss_sum / MIB:.0f} MiB (PSS {run.pss_sum / MIB:.0f} MiB), "
            f"largest process {run.rss_one / MIB:.0f} MiB")


def size(corpus: Corpus) -> str:
    return f"{corpus.mb:.1f} MB ({len(corpus.shards)} x {corpus.mb / len(corpus.shards):.1f} MB)"


def throughput_rows(r: TokResults, corpus: Corpus, big: Corpus, repeat: int) -> list[Row]:
    """Ours against its limit, plain transformers, upstream datasets and the original, on the same text."""
    name, ours, mb, tokens = r.tok.name, r.ours, corpus.mb, r.ours.content_tokens
    best = f"; best of {repeat}" if repeat > 1 else ""
    speed = ours.seconds / mb  # s/MB: every "ours/X speed" below divides X's s/MB by this
    rows = [
        Row(f"ours, all cores, full build ({r.ours.manifest['tokenizer']['encoder']} encoder)", name, size(corpus),
            ours.seconds, mb, tokens, ours.time.others, f"{ours.inside} after its imports{best}"),
        Row(f"backend limit, all cores ({r.limit.backend}, encode only)", name, size(corpus), r.limit.seconds, mb,
            r.limit.tokens, r.limit.time.others, best.lstrip("; "),
            check(r.limit.seconds / ours.seconds, r.limit.seconds / ours.seconds >= 0.9, "ours/limit speed (≥ 0.9)")),
        Row("transformers tokenizer(batch), all cores (encode only)", name, size(corpus), r.plain.seconds, mb,
            r.plain.tokens, r.plain.time.others, "", f"ours/this speed = {r.plain.seconds / ours.seconds:.3g}"),
    ]
    if r.datasets:
        d = r.datasets
        rows.append(Row("HF datasets map + group_texts (run_mlm.py), all cores", name, size(corpus), d.seconds, mb,
                        tokens, d.time.others, f"timed inside its process; {d.time.seconds:.1f} s with imports",
                        check(d.seconds / ours.seconds, d.seconds / ours.seconds >= 3, "ours/this speed (≥ 3)")))
    for how, o in r.original.items():
        o_mb = o.input_bytes / MB
        rows.append(Row(f"original builder, 1 process, {how}", name, f"{o_mb:.1f} MB subset", o.seconds, o_mb,
                        o.tokens, o.time.others, f"{o.dropped:,} of {o.lines:,} lines dropped (longer than a block)",
                        f"ours/this speed = {(o.seconds / o_mb) / speed:.3g}"))
    rows += [
        Row("ours, no-op rerun on unchanged input", name, size(corpus), r.rerun.seconds, None, None,
            r.rerun.time.others, r.rerun.summary.split(": ", 1)[1].split(";")[0],
            check(r.rerun.seconds / ours.seconds, r.rerun.seconds / ours.seconds <= 0.05, "rerun/full (≤ 0.05)")),
        Row("ours, full build of a one-line corpus (fixed cost)", name, "1 line", r.fixed.seconds, None, None,
            r.fixed.time.others, "start-up, imports, tokenizer load, pool, manifest",
            f"{r.fixed.seconds / ours.seconds:.0%} of the full build above"),
        Row("ours, full build, RSS sampled", name, size(corpus), r.rss_small.seconds, mb, r.rss_small.content_tokens,
            r.rss_small.time.others, rss_text(r.rss_small)),
        Row("ours, full build, RSS sampled", name, size(big), r.big_ours.seconds, big.mb, r.big_ours.content_tokens,
            r.big_ours.time.others, rss_text(r.big_ours),
            check(r.big_ours.rss_sum / r.rss_small.rss_sum, r.big_ours.rss_sum / r.rss_small.rss_sum <= 1.15,
                  f"peak RSS {big.mb:.0f} MB / {mb:.0f} MB (~1.0)")),
        Row(f"ours, full build, RSS sampled, --task_size_mb {corpus.bytes / len(corpus.shards) / MIB:.2f}"
            f" (tasks as big as the {corpus.mb:.0f} MB corpus's shards)", name, size(big), r.big_small_tasks.seconds, big.mb,
            r.big_small_tasks.content_tokens, r.big_small_tasks.time.others, rss_text(r.big_small_tasks),
            check(r.big_small_tasks.rss_sum / r.rss_small.rss_sum, r.big_small_tasks.rss_sum / r.rss_small.rss_sum
                  <= 1.15, f"peak RSS {big.mb:.0f} MB / {mb:.0f} MB, same task size (~1.0)")),
        Row(f"backend limit, all cores ({r.big_limit.backend}, encode only)", name, size(big), r.big_limit.seconds,
            big.mb, r.big_limit.tokens, r.big_limit.time.others, marginal(r, corpus, big),
            check(r.big_limit.seconds / r.big_ours.seconds, r.big_limit.seconds / r.big_ours.seconds >= 0.9,
                  "ours/limit speed (≥ 0.9)")),
    ]
    return rows


def marginal(r: TokResults, corpus: Corpus, big: Corpus) -> str:
    """MB/s of the extra MB between the two corpus sizes: throughput with the fixed costs (start-up) taken out."""
    extra = big.mb - corpus.mb
    ours = extra / max(r.big_ours.seconds - r.rss_small.seconds, 1e-9)
    limit = extra / max(r.big_limit.seconds - r.limit.seconds, 1e-9)
    return (f"marginal MB/s from {corpus.mb:.0f} to {big.mb:.0f} MB (fixed costs out): ours {ours:.2f}, "
            f"limit {limit:.2f}, ours/limit {ours / limit:.2f}")


def disk_rows(r: TokResults) -> list[Row]:
    """Bytes per stored token: ours (manifest disk_bytes / tokens) against the other caches."""
    t, name = r.ours.totals, r.tok.name
    mine = t["disk_bytes"] / t["tokens"]
    rows = [Row("disk: ours (tokens + lines + blocks .npy)", name, f"{t['tokens']:,} tokens stored",
                notes=f"{t['disk_bytes'] / MB:.1f} MB = {mine:.2f} B/token ({r.ours.manifest['tokenizer']['dtype']} ids)",
                ratio=f"original's uint32 = {4 / mine:.2f}x ours")]
    others = []
    if r.original:
        o = next(iter(r.original.values()))
        others.append(("original builder (uint32 ids + uint32 block offsets)", o.disk_bytes, o.stored_tokens, "subset"))
    if r.datasets:
        d = r.datasets
        others.append(("HF datasets cache dir (raw + tokenized + grouped Arrow)", d.disk_bytes, d.tokens,
                       f"{d.rows:,} rows x {MAX_SEQ_LENGTH}"))
    for what, nbytes, tokens, detail in others:
        per = nbytes / tokens
        rows.append(Row(f"disk: {what}", name, f"{tokens:,} tokens stored ({detail})",
                        notes=f"{nbytes / MB:.1f} MB = {per:.2f} B/token", ratio=f"{per / mine:.2f}x ours"))
    return rows


def machine_facts(cores: int) -> str:
    import datasets
    import sentencepiece
    import tokenizers
    import transformers

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), platform.processor())
    return (f"{cores} cores used of {os.cpu_count()} ({model}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"Python {platform.python_version()}, transformers {transformers.__version__}, "
            f"tokenizers {tokenizers.__version__}, sentencepiece {sentencepiece.__version__}, "
            f"datasets {datasets.__version__}")


def code_version() -> str:
    """The commit the measured code came from, and whether preprocess/ or common/ had uncommitted edits."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "preprocess", "common")
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}{' + uncommitted edits' if dirty else ''}"


def consistency_notes(r: TokResults) -> list[str]:
    """Every harness must see exactly the tokens ours stored; say so loudly if one does not."""
    notes = []
    for what, run, ours in (("limit", r.limit, r.ours), ("tokenizer(batch)", r.plain, r.ours),
                            ("limit on the big corpus", r.big_limit, r.big_ours)):
        if run.tokens != ours.content_tokens:
            notes.append(f"{r.tok.name}: {what} counted {run.tokens:,} tokens, ours stored {ours.content_tokens:,}")
    return notes


def report(results: list[TokResults], corpus: Corpus, big: Corpus, args: argparse.Namespace,
           load: tuple[float, float], code: tuple[str, str], extra_rows: Sequence[Row] = ()) -> str:
    first = results[0].ours.totals
    head = [
        "# preprocess benchmark",
        "",
        f"- machine: {machine_facts(args.workers)}; load average {load[0]:.2f} before, {load[1]:.2f} after",
        f"- code measured: git {code[0]} at the start, {code[1]} at the end",
        f"- corpus: {size(corpus)}, {first['lines']:,} non-empty lines ({THAI_SHARE:.0%} Thai-like from "
        f"{corpus.thai_source}; 1-{MAX_WORDS} words/line, {PARAGRAPH_SHARE:.0%} paragraphs of "
        f"{PARAGRAPH_WORDS[0]}-{PARAGRAPH_WORDS[1]} words); big corpus {size(big)}; "
        f"max_seq_length {MAX_SEQ_LENGTH}; MB = 10^6 bytes",
        *(f"- {r.tok.name} ({r.tok.description}): {r.ours.content_tokens:,} tokens, {r.ours.totals['blocks']:,} "
          f"blocks, {r.ours.totals['lines_split']:,} lines longer than a block" for r in results),
        "- wall s: ours = the whole `python -m preprocess` subprocess; limit and tokenizer(batch) = tokenizer "
        "load + pool + encoding in this process; datasets = timed inside its process (imports excluded); "
        "original = the build only. M tok/s counts the text's tokens (no separators or specials) in every row. "
        "others' cores: CPU other processes used meanwhile (noise if well above 0)",
        *(f"- WARNING: {n}" for r in results for n in consistency_notes(r)),
        "",
    ]
    rows = [row for r in results for row in throughput_rows(r, corpus, big, args.repeat)]
    rows += [*extra_rows, *(row for r in results for row in disk_rows(r))]
    return "\n".join(head) + markdown(rows) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=50, help="corpus size for the throughput rows (MB)")
    p.add_argument("--rss_mb", type=float, default=200, help="bigger corpus: peak RSS and throughput at scale (MB)")
    p.add_argument("--original_mb", type=float, default=5, help="subset the slow original builder runs on (MB)")
    p.add_argument("--out", type=Path, default=Path("bench_out"), help="work dir (corpora, tokenizers, caches)")
    p.add_argument("--workers", type=int, default=None, help="processes for every parallel row (default: all cores)")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs of ours and the limit; the fastest counts")
    p.add_argument("--skip_datasets", action="store_true", help="skip the HF datasets rows")
    p.add_argument("--skip_original", action="store_true", help="skip the original builder rows")
    p.add_argument("--word_mb", type=float, default=15, help="Thai text for the word-level rows, in 6 shards (MB; 0 skips them)")
    p.add_argument("--word_copies", type=int, default=4, help="copies of those shards the word-level rows read")
    p.add_argument("--only_word_level", action="store_true", help="run only the word-level (newmm) rows")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one task in a fresh interpreter
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    if args.workers is None:
        from preprocess.config import available_cores

        args.workers = available_cores()
    return args


CHILD_TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "train": train_child,
    "hf_datasets": hf_datasets_child,
}


def word_level_table(rows: list[Row], args: argparse.Namespace, load: tuple[float, float]) -> str:
    """The word-level rows alone (``--only_word_level``), with what ran and how busy the machine was."""
    lines = ["| measurement | input | seconds | MB/s | other processes (cores) | notes | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.measurement} | {r.input} | {r.seconds:.2f} | {r.mb / r.seconds:.2f} | {r.others:.2f} "
                     f"| {r.notes} | {r.ratio} |")
    argv = " ".join(sys.argv[1:])
    return "\n".join([*lines, "", f"- command: `python bench/preprocess_bench.py {argv}`",
                      f"- {os.cpu_count()} cores; 1-min load average {load[0]:.2f} at start, {load[1]:.2f} at end"]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILD_TASKS[spec["task"]](spec)))
        return 0
    start = time.perf_counter()
    load_before, code_before = os.getloadavg()[0], code_version()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only_word_level:
        text = word_level_table(word_level_rows(args), args, (load_before, os.getloadavg()[0]))
        print(text)
        (args.out / "preprocess_word_level.md").write_text(text)
        return 0
    corpus = make_corpus(args.out, args.mb, seed=0)
    big = make_corpus(args.out, args.rss_mb, seed=1)
    toks = make_tokenizers(args.out, corpus, args.workers)
    subset = None
    if not args.skip_original:
        data = head_bytes(corpus.shards, int(args.original_mb * MB))
        subset = write_file(args.out / "original" / "subset.txt", data)
    results = [bench_tokenizer(tok, corpus, big, subset, args) for tok in toks]
    words = word_level_rows(args) if args.word_mb > 0 else []
    text = report(results, corpus, big, args, (load_before, os.getloadavg()[0]), (code_before, code_version()),
                  words)
    text += f"\nbench wall time: {time.perf_counter() - start:.0f} s\n"
    print(text)
    (args.out / "preprocess.md").write_text(text)
    log(f"done in {time.perf_counter() - start:.0f} s; table in {args.out / 'preprocess.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
