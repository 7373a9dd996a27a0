#!/usr/bin/env python
"""Tokenizer training: ``mlm-train-tokenizer`` from a mixed-format corpus vs the library alone on the sample.

Everything is built deterministically under ``--out`` (default
``bench_out/tokenizer_train/``, gitignored): English+Thai text
(bench/preprocess_bench.py's generator) as three named corpora of a third
each, ``web`` as nested ``.txt`` dirs, ``news`` as ``.jsonl.zst``, ``wiki`` as
Parquet (one line a record or row, with fields that are never read),
sampled in the shares ``web=0.5,news=0.3,wiki=0.2``. Then, per family, and
for each of ``--large_families`` again on a ``--large_sample_mb`` sample of a
``--large_mb`` corpus (ours' fixed costs, about 0.4 s, weigh less there):

* ours: ``python -m preprocess.train_tokenizer --type F`` over the three
  corpora (``--recursive``, ``--ext txt,jsonl.zst,parquet``, ``--mixture``,
  ``--sample_bytes`` = ``--sample_mb``): a fresh process, so imports, reading
  the formats, drawing the sample, training, saving, loading back and the
  held-out report are all counted;
* the library alone: the lines ours trained on (the same sample, drawn here
  by the same code with the same seed, its digest checked against ours'
  training.json, less the held-out lines), already extracted to ONE text
  file, trained by the library straight from the file in a fresh process
  that imports nothing else (``bench/tokenizer_library.py``):
  ``tokenizers``' trainer with the family's model, pre-tokenizer and
  specials (``Tokenizer.train([file])``); SentencePiece's trainer (the C++
  of ``spm_train``) with ``input=file`` for spm and unigram, on the threads
  and settings ours gives it; PyThaiNLP's segmenter counting the file's
  words in a pool of as many processes as ours uses.

Each row: ``--repeat`` timed runs of each side in turn, not sampled, then
one more of each for the peak memory of the whole process tree (sampled
every 50 ms: the sum of RSS; PSS, which splits pages a forked reader shares
with its parent, every 250 ms; the sampler's reads of /proc slowed ours
more than the library). The project's modules are byte-compiled first, as
an install has them. Then ours for ``--memory_family`` on a
corpus 1x and 10x the sample (same ``--sample_bytes``): memory should not
follow the corpus. Prints one markdown table to stdout and writes it to
``<out>/tokenizer_train.md``; progress goes to stderr. ``--smoke``: tiny
sizes, two families, seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The children's environment as the user gave it: bench/preprocess_bench.py sets TOKENIZERS_PARALLELISM on import.
CHILD_ENV = dict(os.environ)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout too, not only where the project is installed

from bench.preprocess_bench import MB, Vocab, english_words, log, make_lines, thai_words  # noqa: E402
from bench.tree_rss import TreeRss  # noqa: E402

CORPORA = {"web": "txt", "news": "jsonl.zst", "wiki": "parquet"}  # name -> format
MIXTURE = "web=0.5,news=0.3,wiki=0.2"  # not their sizes (a third each): the sample must follow the weights
EXT = "txt,jsonl.zst,parquet"
FAMILIES = ("bpe", "wordpiece", "unigram", "spm", "newmm", "syllable")
LIBRARY = {"bpe": "tokenizers BpeTrainer", "wordpiece": "tokenizers WordPieceTrainer",
           "unigram": "SentencePieceTrainer unigram", "spm": "SentencePieceTrainer (spm_train)",
           "newmm": "PyThaiNLP newmm + Counter", "syllable": "PyThaiNLP syllable + Counter"}
SHARDS = 4  # per corpus
ROW_GROUP_ROWS = 10_000
SEED = 42
TIME_TARGET, MEMORY_TARGET = 1.15, 1.2
SLOWEST, MIN_LIMIT_S = 10, 60  # ours is killed past 10x the library's time, but never before 60 s
CORPUS_VERSION = 1  # bump when the corpus changes: a cached one is then rebuilt
MIB = 1 << 20


# --------------------------------------------------------------------------- the corpus


def write_shard(path: Path, lines: list[str], fmt: str) -> None:
    """``lines`` as one shard in ``fmt``: one line a record or row, beside fields the reader must skip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"id": list(range(len(lines))), "text": lines, "url": [f"u/{i}" for i in range(len(lines))]})
        pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
        return
    if fmt == "txt":
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    import pyarrow as pa

    data = "".join(json.dumps({"id": i, "text": s, "meta": {"n": i}}, ensure_ascii=False) + "\n"
                   for i, s in enumerate(lines)).encode()
    path.write_bytes(pa.compress(data, codec="zstd", asbytes=True))


def shard_path(root: Path, name: str, k: int) -> Path:
    fmt = CORPORA[name]
    if fmt == "txt":  # nested: --recursive must find them
        return root / name / f"part{k % 2}" / f"sub{k}" / f"shard_{k:02d}.txt"
    return root / name / f"shard_{k:02d}.{fmt}"


def make_corpus(out: Path, mb: float, seed: int) -> dict[str, Path]:
    """About ``mb`` MB of text, a third per corpus; reused when built before with the same settings."""
    root = out / f"corpus_{mb:g}mb_seed{seed}"
    stamp = {"version": CORPUS_VERSION, "mb": mb, "seed": seed, "shards": SHARDS}
    dirs = {n: root / n for n in CORPORA}
    if (root / "corpus.json").is_file() and json.loads((root / "corpus.json").read_text()) == stamp:
        return dirs
    shutil.rmtree(root, ignore_errors=True)
    th_list, _ = thai_words(40_000)
    en, th = Vocab.zipf(english_words(20_000)), Vocab.zipf(th_list)
    per_shard = int(mb * MB / len(CORPORA) / SHARDS) + 1
    t = time.perf_counter()
    for c, name in enumerate(CORPORA):
        for k in range(SHARDS):
            rng = np.random.default_rng([seed, c, k])
            lines, size = [], 0
            while size < per_shard:
                more = make_lines(rng, 50, en, th)  # ~30 KB: a shard ends near its size
                lines += more
                size += sum(len(s.encode()) + 1 for s in more)
            write_shard(shard_path(root, name, k), lines, CORPORA[name])
    (root / "corpus.json").write_text(json.dumps(stamp))
    log(f"corpus {root.name}: {len(CORPORA)} x {SHARDS} shards of ~{per_shard / MB:.2f} MB of text, "
        f"{disk_bytes(root) / MB:.1f} MB on disk, {time.perf_counter() - t:.1f} s")
    return dirs


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "corpus.json")


# --------------------------------------------------------------------------- runs


def ours_argv(family: str, dirs: dict[str, Path], out: Path, sample_mb: float, vocab: int, workers: int,
              mixture: str | None = MIXTURE) -> list[str]:
    """``mixture`` None: the corpora weigh their size."""
    spec = ",".join(f"{n}={d}" for n, d in dirs.items())
    argv = ["--type", family, "--train_dir", spec, "--ext", EXT, "--recursive",
            *(["--mixture", mixture] if mixture else []), "--sample_bytes", f"{sample_mb * MB / 1e9:g}", "--seed", str(SEED), "--num_workers", str(workers),
            "--output_dir", str(out)]
    return argv + (["--vocab_size", str(vocab)] if family not in ("newmm", "syllable") else [])


@dataclass
class Run:
    seconds: float
    peak_pss: int
    peak_rss: int
    stdout: str
    failed: str = ""  # why it gave no tokenizer: killed past its time limit, or its last error line

    def cell(self) -> str:
        if self.failed:
            return self.failed
        return f"{self.seconds:.2f} s, {self.peak_pss / MIB:,.0f} / {self.peak_rss / MIB:,.0f} MiB"


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants, by id (ours' workers also die with their parent)."""
    import psutil

    try:
        procs = [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


def measure(cmd: list[str], out: Path, timeout: float, memory: bool = True) -> Run:
    """Wall time and the tree's peak memory of ``cmd`` in a fresh process; ``out`` is emptied first. A run past
    ``timeout`` seconds is killed (a hang must not stop the bench) and reported as such. ``memory`` False: no
    sampling (peaks 0), for the timed runs: the sampler's reads of /proc slowed ours by 0.15 s a run on
    2 cores and the library by 0.05 s (ours maps more: pyarrow, numpy), which a timed run must not count."""
    shutil.rmtree(out, ignore_errors=True)
    log(f"run: {shlex.join(cmd[1:])[:160]}")
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=CHILD_ENV)
    failed = ""
    rss = TreeRss(proc.pid)
    with rss if memory else contextlib.nullcontext():
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            stdout, stderr = proc.communicate()
            failed = f"no tokenizer: killed after {timeout:.0f} s"
    seconds = time.perf_counter() - t
    if proc.returncode != 0 and not failed:
        failed = f"fails (rc {proc.returncode}): {(stderr.strip().splitlines() or ['?'])[-1][:100]}"
    if failed:
        log(f"{failed}; its stderr ends: {stderr[-300:]!r}")
    return Run(seconds, rss.peak_pss, rss.peak_sum, stdout, failed)


def compile_sources() -> int:
    """Byte-compile the project's modules and the library side's script, as ``pip install`` does; returns
    the modules compiled. The library is compiled where it is installed, and a checkout writes its own
    ``__pycache__`` on first import, but not where PYTHONDONTWRITEBYTECODE is set (as on the machine of the
    table in docs/benchmarks.md): there every run of ours compiled its modules from source again, about
    0.1 s that no installed copy pays, counted against ours alone."""
    import compileall

    packages = ("common", "preprocess", "train", "bench")
    for package in packages:
        if not compileall.compile_dir(str(REPO / package), quiet=1):
            raise SystemExit(f"{REPO / package}: does not byte-compile")
    return sum(1 for package in packages for _ in (REPO / package).rglob("*.py"))


def median_run(runs: list[Run], sampled: list[Run] | None = None) -> Run:
    """The run of median time (the upper one of an even count), with the highest peak memory of ``sampled``
    (default: of ``runs``): a failed run, if any, stands for them all."""
    sampled = runs if sampled is None else sampled
    failed = next((r for r in [*runs, *sampled] if r.failed), None)
    if failed is not None:
        return failed
    mid = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    return Run(mid.seconds, max((r.peak_pss for r in sampled), default=0),
               max((r.peak_rss for r in sampled), default=0), mid.stdout)


def extract_sample(dirs: dict[str, Path], sample_mb: float, workers: int, path: Path) -> tuple[str, int, int]:
    """The lines ``--type bpe`` with these flags trains on, by its own functions, written to ``path``.

    Returns the whole sample's digest (as training.json records it), its lines and the file's bytes."""
    from preprocess import train_tokenizer as tt
    from preprocess.sample import held_out, sample_digest

    args = tt.build_parser().parse_args(ours_argv("bpe", dirs, path.parent / "unused", sample_mb, 64, workers))
    drawn, _ = tt.draw_sample(args, tt.corpora_of(args))
    lines = [s for d in drawn.values() for s in d.lines]
    training = [s for d in drawn.values() for s in held_out(d.lines, tt.held_out_share(d.text_bytes), SEED)[0]]
    data = ("\n".join(training) + "\n").encode("utf-8", errors="surrogatepass")
    path.write_bytes(data)
    return sample_digest(lines), len(training), len(data)


def own_clock(stdout: str) -> str:
    """The seconds ours prints for its work, reading the sample to loading the tokenizer back: the rest of its
    wall time is start-up (imports) and the held-out report."""
    found = re.search(r" in ([0-9.]+) s -> ", stdout)
    return f"{found.group(1)} s" if found else "?"


def recorded_digest(out: Path) -> str | None:
    path = out / "training.json"
    return json.loads(path.read_text())["sample"]["digest"] if path.is_file() else None


# --------------------------------------------------------------------------- the library alone (a child process)


def library_argv(family: str, text: Path, out: Path, vocab: int, workers: int) -> list[str]:
    """bench/tokenizer_library.py's command line: it imports only the library, and takes what must match ours
    from here."""
    from preprocess.tokenizer_families import BERT_SPECIALS, ROBERTA_SPECIALS, SPM_MAX_SENTENCE, SPM_THREADS

    specials = BERT_SPECIALS if family == "wordpiece" else ROBERTA_SPECIALS
    return [sys.executable, str(REPO / "bench" / "tokenizer_library.py"), family, str(text), str(out), str(vocab),
            "--workers", str(workers), "--specials", ",".join(specials), "--spm_threads", str(SPM_THREADS),
            "--spm_max_sentence", str(SPM_MAX_SENTENCE)]


# --------------------------------------------------------------------------- report


def ok(ratio: float, target: float) -> str:
    return f"{'ok' if ratio <= target else 'MISSED'} (<= {target:g}x)"


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("tokenizers", "sentencepiece", "pythainlp", "transformers"))


def compare(family: str, dirs: dict[str, Path], text: Path, digest: str, sample_mb: float, out: Path,
            a: argparse.Namespace) -> tuple[str, bool | None]:
    """One table row: ours on ``dirs`` vs the library alone on ``text``, the lines ours trains on; and whether
    ours drew the sample ``digest`` names (None: it gave no tokenizer)."""
    # The library first: ours is killed past SLOWEST x its time (the 1.15x target is then long missed) or
    # past --timeout, so a hang costs a minute, not the bench.
    lib_out = out.parent.parent / "library" / out.name
    lib_cmd = library_argv(family, text, lib_out, a.vocab_size, a.workers)
    ours_cmd = [sys.executable, "-m", "preprocess.train_tokenizer",
                *ours_argv(family, dirs, out, sample_mb, a.vocab_size, a.workers)]
    libs, ourses, sampled = [], [], ([], [])
    for k in range(a.repeat + 1):  # interleaved: a slow minute on a shared machine hits both sides alike
        memory = k == a.repeat  # the last run of each side: memory, sampled; the others: time, unsampled
        (sampled[0] if memory else libs).append(measure(lib_cmd, lib_out, a.timeout, memory))
        limit = min(a.timeout, max(MIN_LIMIT_S, SLOWEST * (libs or sampled[0])[-1].seconds))
        (sampled[1] if memory else ourses).append(measure(ours_cmd, out, limit, memory))
        if any(r.failed for r in [*libs, *ourses, *sampled[0], *sampled[1]]):
            break
    lib, ours = median_run(libs or sampled[0], sampled[0]), median_run(ourses or sampled[1], sampled[1])
    ratio = ours.seconds / lib.seconds
    # The best of the runs too, as timeit reports: on shared cores the other processes only ever add time,
    # so the fastest run is the closest to what each side costs (the medians of 5 moved by 0.1x run to run).
    best = min(r.seconds for r in ourses) / min(r.seconds for r in libs)
    shown = f"> {ratio:.1f}x" if ours.failed else f"{ratio:.2f}x (best {best:.2f}x)"
    extra = "" if ours.failed or lib.failed else f"{ours.seconds - lib.seconds:+.2f} s"
    row = (f"| {family} | {sample_mb:g} MB | {ours.cell()} | {own_clock(ours.stdout)} | {lib.cell()} | "
           f"{LIBRARY[family]} | {extra} | {shown} | "
           f"{'MISSED' if ours.failed or lib.failed else ok(best, TIME_TARGET)} |")
    print(row, file=sys.stderr, flush=True)
    return row, None if ours.failed else recorded_digest(out) == digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_out/tokenizer_train")
    p.add_argument("--mb", type=float, default=20.0, help="MB of text in the mixed corpus the families train from")
    p.add_argument("--sample_mb", type=float, default=5.0, help="MB of text in the sample (--sample_bytes)")
    p.add_argument("--vocab_size", type=int, default=8000, help="subword families' vocabulary")
    p.add_argument("--large_mb", type=float, default=40.0, help="MB of text in the corpus of the large rows")
    p.add_argument("--large_sample_mb", type=float, default=20.0, help="MB of text in the large rows' sample")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--large_families", default=",".join(FAMILIES),
                   help="families measured again on the large sample (none: an empty string)")
    p.add_argument("--memory_family", default="bpe", help="the family of the 1x / 10x memory rows")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--timeout", type=float, default=900, help="seconds any one run may take")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each side per row, interleaved; the row shows the median time (one run's times "
                   "varied by 10-20%% here)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, bpe and newmm: proves the script in seconds")
    a = p.parse_args(argv)
    if a.smoke:
        a.mb, a.sample_mb, a.vocab_size, a.families = 0.6, 0.15, 512, "bpe,newmm"
        a.large_mb, a.large_sample_mb, a.repeat, a.large_families = 1.2, 0.6, 1, "bpe"
    families = [f for f in a.families.split(",") if f]
    large = [f for f in a.large_families.split(",") if f]
    unknown = sorted(set(families + large) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"--families/--large_families: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(FAMILIES)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    compiled = compile_sources()
    load_start = load()
    dirs = make_corpus(out, a.mb, SEED)
    text = out / f"sample_{a.mb:g}mb_{a.sample_mb:g}mb.txt"
    digest, n_lines, n_bytes = extract_sample(dirs, a.sample_mb, a.workers, text)
    log(f"sample: {n_lines:,} lines, {n_bytes / MB:.2f} MB -> {text}")
    rows = ["| family | sample | ours: CLI over .txt + .jsonl.zst + Parquet | of which its own clock | library "
            "alone, one .txt file | library | ours - library, median | ours / library, time: median (best) | "
            "target, on the best |", "|---|---|---|---|---|---|---|---|---|"]
    same_sample = []
    for family in families:
        row, same = compare(family, dirs, text, digest, a.sample_mb, out / "ours" / family, a)
        rows.append(row)
        same_sample += [same] if same is not None else []
    # Again where ours' fixed costs (start-up, the formats' imports, loading back, the report) amortise: at
    # 5 MB the library trains bpe in about 2 s, and 0.4 s of fixed cost alone is 1.2x.
    big_lines = big_bytes = 0
    if large:
        big_dirs = make_corpus(out, a.large_mb, SEED)
        big_text = out / f"sample_{a.large_mb:g}mb_{a.large_sample_mb:g}mb.txt"
        big_digest, big_lines, big_bytes = extract_sample(big_dirs, a.large_sample_mb, a.workers, big_text)
        log(f"large sample: {big_lines:,} lines, {big_bytes / MB:.2f} MB -> {big_text}")
    for family in large:
        row, same = compare(family, big_dirs, big_text, big_digest, a.large_sample_mb,
                            out / "ours" / f"{family}_large", a)
        rows.append(row)
        same_sample += [same] if same is not None else []
    rows += ["", f"| ours, --type {a.memory_family}, corpus of | text | sample drawn, by size | wall | "
             "peak PSS / sum of RSS | peak PSS vs 1x | target |", "|---|---|---|---|---|---|---|"]
    base = None
    for times in (1, 10):
        mem_dirs = make_corpus(out, a.sample_mb * times, SEED + times)
        # The highest peak of --repeat runs: PSS is sampled every 250 ms, so one run can miss its peak. By
        # size, not MIXTURE: the 1x corpus (a third each) cannot give web its half, so the others would be cut
        # to keep the shares, and it would train on 3.5 MB against the 10x corpus's 5 MB.
        run = median_run([measure([sys.executable, "-m", "preprocess.train_tokenizer",
                                   *ours_argv(a.memory_family, mem_dirs, out / "mem" / f"x{times}", a.sample_mb,
                                              a.vocab_size, a.workers, mixture=None)],
                                  out / "mem" / f"x{times}", a.timeout)
                          for _ in range(a.repeat)])
        if run.failed:
            rows.append(f"| {times}x the sample | {a.sample_mb * times:g} MB | | {run.cell()} | | | MISSED |")
            continue
        base = base or run
        ratio = run.peak_pss / base.peak_pss
        drawn = json.loads((out / "mem" / f"x{times}" / "training.json").read_text())["sample"]["text_bytes"]
        rows.append(f"| {times}x the sample | {a.sample_mb * times:g} MB | {drawn / MB:.2f} MB | {run.seconds:.2f} s | "
                    f"{run.peak_pss / MIB:,.0f} / {run.peak_rss / MIB:,.0f} MiB | {ratio:.2f}x "
                    f"(RSS sum {run.peak_rss / base.peak_rss:.2f}x) | {ok(ratio, MEMORY_TARGET) if times > 1 else ''} |")
        print(rows[-1], file=sys.stderr, flush=True)
    args = shlex.join(sys.argv[1:] if argv is None else argv)
    rows += [
        "",
        f"- command: `python bench/tokenizer_train.py{' ' + args if args else ''}`",
        f"- machine: {len(os.sched_getaffinity(0))} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{versions()}; 1-min load average {load_start} at start, {load()} at end (above ~0.5: other processes "
        "shared the cores); children's TOKENIZERS_PARALLELISM: "
        f"{CHILD_ENV.get('TOKENIZERS_PARALLELISM', 'unset')} (unset: tokenizers trains on every core, ours too); "
        f"PYTHONDONTWRITEBYTECODE: {CHILD_ENV.get('PYTHONDONTWRITEBYTECODE', 'unset')}, so the project's {compiled} "
        "modules were byte-compiled first, as an install does",
        f"- corpus: {a.mb:g} MB of English+Thai text, a third each as nested .txt, .jsonl.zst and Parquet "
        f"({SHARDS} shards each); sampled {MIXTURE}, {a.sample_mb:g} MB, seed {SEED}, {a.workers} workers; "
        f"subword vocabularies {a.vocab_size:,}",
        f"- the library's file: the {n_lines:,} lines ({n_bytes / MB:.2f} MB) ours trained on (its sample less the "
        f"held-out 2%); same sample digest as ours' training.json for every family that finished: "
        f"{'yes' if all(same_sample) else 'NO'}",
        f"- the large rows ({', '.join(large) or 'none'}): a corpus of {a.large_mb:g} MB built as the first, a "
        f"{a.large_sample_mb:g} MB sample ({big_lines:,} lines, {big_bytes / MB:.2f} MB in the library's file), "
        "where fixed costs weigh less",
        "- each cell: wall time of a fresh process (imports included; ours also reads the formats, draws the "
        "sample, saves, loads back and writes its held-out report), then the process tree's peak PSS / peak "
        f"sum of RSS: the median time of {a.repeat} runs of each, ours and the library's in turn, unsampled, and the "
        "peak of one more run of each, sampled (the 1x / 10x rows: every run sampled); ours less the library, in seconds (of the medians: ours' fixed cost shows as about the same number "
        "at every size); the ratio of the medians, and of the fastest runs (what the target is judged on). Its own clock: what ours prints (of the median run), from reading the corpus to loading the "
        "tokenizer back (no imports, no report)",
    ]
    table = "\n".join(rows)
    print(table)
    (out / "tokenizer_train.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
