#!/usr/bin/env python
"""Many cores and nodes side by side: the local executor, Ray and sliced builds on the same text.

On ``--mb`` MB of English+Thai text (bench/preprocess_bench.py's corpus,
8..16 shards) and with two tokenizers trained here on a sample of it (a
WordPiece fast tokenizer and the users' word-level ``newmm`` tokenizer,
slow Python segmentation), ``python -m preprocess`` (a subprocess, start-up
included) builds a fresh cache three ways on the same 2 cores:

* ``local 2 workers``: ``--num_workers 2`` (forked processes);
* ``Ray 2 nodes x 1 CPU``: ``--executor ray --ray_address`` a 2-node x 1-CPU
  Ray cluster on loopback (ray.cluster_utils.Cluster), started once before
  the runs; its start-up is reported on its own, not counted in the runs;
* ``2 slices + commit``: ``--num_slices 2 --slice 0`` and ``--slice 1``
  (``--num_workers 1`` each) at once, then the same command without the
  slice flags (the commit: it hashes the text and writes the manifests).

Runs are interleaved and the best of ``--repeats`` counts. Every cache is
checked byte for byte against the others: every file the manifest names
(pieces' tokens and lines, blocks) and the manifests less ``created_by``.
Also measured: Ray's overheads (cluster start-up, driver connection, fresh
workers, per-task cost of empty tasks), what each way costs on a two-shard
corpus of a few lines (the fixed cost: start-up, imports, tokenizer loads),
a fresh process's imports and tokenizer load, and the hashing rate a commit
reads the text at. A worked estimate for 100 GB of Thai text with newmm on
16 nodes x 32 cores closes the report.

Corpus and tokenizers are cached under ``--out`` (default ``bench_out/``,
gitignored); caches live in a temporary dir under it, deleted at the end;
the runs' stderr goes to ``<out>/logs/nodes``. Markdown to stdout, progress
to stderr. ``--smoke``: 2 MB, in seconds.
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before any tokenizer: this process starts subprocesses
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray swaps 127.0.0.1 for a routable address
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs: silences a FutureWarning

import argparse
import hashlib
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.preprocess_bench import (  # noqa: E402
    MB,
    NOISE_CORES,
    SAMPLE_MB,
    WORDPIECE_VOCAB,
    Corpus,
    CpuClock,
    head_bytes,
    log,
    make_corpus,
    wait_for_quiet,
    write_file,
)

LOCAL, RAY, SLICES = "local 2 workers", "Ray 2 nodes x 1 CPU", "2 slices + commit"
EXECUTORS = (LOCAL, RAY, SLICES)
SLUG = {LOCAL: "local", RAY: "ray", SLICES: "slices"}  # in file names
TARGET = 0.85  # Ray and slices against the local executor, same cores
WORKERS = 2
NEWMM_MIN_FREQUENCY = 2
EMPTY_TASKS = 200
SERIAL_TASKS = 50
HASH_THREADS = 4  # preprocess.scan.scan_shards' default: what a commit (and any driver) hashes with

# The worked estimate.
EST_BYTES = 100e9
EST_NODES, EST_CORES = 16, 32


# --------------------------------------------------------------------------- measuring


class RayCpu:
    """CPU time of the Ray cluster's processes (GCS, raylets and their workers), sampled in a thread.

    They are this process's children but never waited for, so ``RUSAGE_CHILDREN``
    misses them: without this, a Ray run's own workers would count as noise.
    A worker that lives less than one interval between samples is missed.
    """

    INTERVAL_S = 0.2

    def __init__(self, roots: list[psutil.Process]):
        self.roots = roots
        self._seen: dict[tuple[int, float], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        found: dict[tuple[int, float], float] = {}
        for root in self.roots:
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                    found[(p.pid, p.create_time())] = t.user + t.system
                except psutil.Error:
                    pass
        with self._lock:
            self._seen.update(found)

    def total(self) -> float:
        """CPU seconds of every Ray process seen alive so far, at its last sample."""
        self._sample()
        with self._lock:
            return sum(self._seen.values())

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self._sample()

    def start(self) -> RayCpu:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


RAY_CPU: RayCpu | None = None  # set once the cluster is up


@dataclass
class Timed:
    seconds: float
    others: float  # cores other processes kept busy meanwhile (ours: this tree, the Ray cluster included)


class Meter:
    """Wall time, and the cores other processes used meanwhile (machine busy CPU less ours)."""

    time: Timed

    def __enter__(self) -> Meter:
        self._clock = CpuClock.now()
        self._ray = RAY_CPU.total() if RAY_CPU else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        end = CpuClock.now()
        ray = (RAY_CPU.total() if RAY_CPU else 0.0) - self._ray
        wall = end.wall - self._clock.wall
        others = (end.busy - self._clock.busy) - (end.mine - self._clock.mine) - ray
        self.time = Timed(wall, max(0.0, others) / wall if wall > 0 else 0.0)


# --------------------------------------------------------------------------- tokenizers


@dataclass
class Tok:
    name: str  # for the table
    dir: Path
    type: str  # --tokenizer_type


def train_tokenizers(out: Path, corpus: Corpus, kinds: list[str]) -> dict[str, Tok]:
    """A WordPiece and a newmm tokenizer trained on a sample of every shard; reused when trained on this corpus."""
    root = out / "nodes_tokenizers" / corpus.dir.name
    toks = {}
    per_shard = SAMPLE_MB * MB // len(corpus.shards)
    params = {"corpus": str(corpus.dir), "bytes": corpus.bytes, "sample_mb": SAMPLE_MB, "vocab": WORDPIECE_VOCAB,
              "newmm_min_frequency": NEWMM_MIN_FREQUENCY}
    for kind in kinds:
        d = root / kind
        stamp = root / f"{kind}.json"
        if not (stamp.is_file() and json.loads(stamp.read_text()) == params):
            shutil.rmtree(d, ignore_errors=True)
            sample_dir = root / f"sample_{kind}"
            shutil.rmtree(sample_dir, ignore_errors=True)
            sample = write_file(sample_dir / "sample.txt",
                                b"".join(head_bytes([p], per_shard) for p in corpus.shards))
            t = time.perf_counter()
            if kind == "wordpiece":  # in a child: the trainer's threads stay out of this process
                code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]); "
                        "from bench.preprocess_bench import train_wordpiece; "
                        "train_wordpiece(Path(sys.argv[1]), Path(sys.argv[2]))")
                cmd = [sys.executable, "-c", code, str(sample), str(d), str(REPO)]
            else:
                cmd = [sys.executable, "-m", "preprocess.train_tokenizer", "--type", "newmm", "--train_dir",
                       str(sample_dir), "--output_dir", str(d), "--min_frequency", str(NEWMM_MIN_FREQUENCY),
                       "--num_workers", str(WORKERS)]
            r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
            if r.returncode != 0:
                raise SystemExit(f"training the {kind} tokenizer failed:\n{r.stderr[-3000:]}")
            log(f"tokenizer {kind}: trained on {sample.stat().st_size / MB:.1f} MB in {time.perf_counter() - t:.1f} s")
            shutil.rmtree(sample_dir)
            stamp.write_text(json.dumps(params))
        toks[kind] = Tok("WordPiece" if kind == "wordpiece" else "newmm", d,
                         "auto" if kind == "wordpiece" else "newmm")
    return toks


# --------------------------------------------------------------------------- running preprocess


def command(tok: Tok, text: Path, cache: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(tok.dir), "--tokenizer_type",
            tok.type, "--train_dir", str(text), "--datasets_cache_dir", str(cache), "--max_seq_length", "512",
            *more]


def executor_flags(executor: str, ray_address: str) -> list[list[str]]:
    """The flags of each phase: one command, or the slices (run at once) and then the commit."""
    if executor == LOCAL:
        return [["--num_workers", str(WORKERS)]]
    if executor == RAY:
        return [["--executor", "ray", "--ray_address", ray_address]]
    return [["--num_workers", "1", "--num_slices", "2", "--slice", "0"],
            ["--num_workers", "1", "--num_slices", "2", "--slice", "1"],
            ["--num_workers", "1"]]


@dataclass
class Run:
    time: Timed  # the whole: slices and commit together for the sliced build
    build: float = 0.0  # the slices' phase (both at once); the whole for the others
    commit: float = 0.0
    slices: tuple[float, ...] = ()  # each slice's own wall time
    own: float = 0.0  # the seconds the CLI reported for its own work (after its imports), local and Ray
    summary: str = ""

    @property
    def seconds(self) -> float:
        return self.time.seconds


def _start(cmd: list[str], log_path: Path) -> tuple[subprocess.Popen, Any]:
    err = open(log_path, "w")  # noqa: SIM115 - closed by _finish
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return p, err


def _finish(p: subprocess.Popen, err: Any, cmd: list[str], log_path: Path) -> str:
    out, _ = p.communicate()
    err.close()
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {p.returncode}:\n{log_path.read_text()[-3000:]}")
    return out.strip()


def _own_seconds(summary: str) -> float:
    """The CLI's own seconds: the last field of its train line ('..., 8.9 s')."""
    for line in summary.splitlines():
        if line.startswith("train:") and line.endswith(" s"):
            try:
                return float(line.rsplit(", ", 1)[-1][:-2])
            except ValueError:
                pass
    return 0.0


def run_once(tok: Tok, text: Path, cache: Path, executor: str, ray_address: str, logs: Path, name: str) -> Run:
    """One build into a fresh ``cache``; stderr of each process to ``logs/<name>*.log``."""
    shutil.rmtree(cache, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    phases = executor_flags(executor, ray_address)
    if executor != SLICES:
        cmd, log_path = command(tok, text, cache, *phases[0]), logs / f"{name}.log"
        with Meter() as m:
            out = _finish(*_start(cmd, log_path), cmd, log_path)
        return Run(m.time, m.time.seconds, own=_own_seconds(out), summary=out.splitlines()[-1] if out else "")
    cmds = [command(tok, text, cache, *f) for f in phases]
    logs_of = [logs / f"{name}_slice{k}.log" for k in range(2)] + [logs / f"{name}_commit.log"]
    with Meter() as m:
        t0 = time.perf_counter()
        started = [(*_start(cmds[k], logs_of[k]), time.perf_counter()) for k in range(2)]
        ends = [0.0, 0.0]
        waiting = {0, 1}
        while waiting:  # each slice's own end, to show how evenly the work was split
            for k in list(waiting):
                if started[k][0].poll() is not None:
                    ends[k] = time.perf_counter()
                    waiting.discard(k)
            time.sleep(0.01)
        for k in range(2):
            _finish(started[k][0], started[k][1], cmds[k], logs_of[k])
        t1 = time.perf_counter()
        out = _finish(*_start(cmds[2], logs_of[2]), cmds[2], logs_of[2])
        t2 = time.perf_counter()
    return Run(m.time, t1 - t0, t2 - t1, tuple(ends[k] - started[k][2] for k in range(2)),
               summary=out.splitlines()[-1] if out else "")


def calm_run(tok: Tok, text: Path, cache: Path, executor: str, ray_address: str, logs: Path, name: str,
             quiet_s: float, tries: int) -> Run:
    """``run_once`` after waiting up to ``quiet_s`` for an idle machine; again while other processes kept
    more than NOISE_CORES cores busy meanwhile, at most ``tries`` runs; the calmest."""
    runs = []
    for _ in range(tries):
        if quiet_s > 0:
            wait_for_quiet(quiet_s)
        runs.append(run_once(tok, text, cache, executor, ray_address, logs, name))
        if runs[-1].time.others <= NOISE_CORES:
            break
        log(f"{name}: other processes used {runs[-1].time.others:.2f} cores meanwhile; measuring again")
    return min(runs, key=lambda r: r.time.others)  # every try writes the same cache


# --------------------------------------------------------------------------- identity


def cache_identity(cache: Path) -> dict[str, str]:
    """Digest of every file each split's manifest names, and of the manifest less ``created_by``."""
    out = {}
    for split_dir in sorted(p for p in cache.iterdir() if (p / "manifest.json").is_file()):
        m = json.loads((split_dir / "manifest.json").read_text())
        m.pop("created_by", None)
        out[f"{split_dir.name}/manifest.json (less created_by)"] = hashlib.blake2b(
            json.dumps(m, sort_keys=True).encode()).hexdigest()
        for piece in m["pieces"]:
            for rel in (piece["files"]["tokens"]["path"], piece["files"]["lines"]["path"],
                        piece["blocks"]["file"]["path"]):
                h = hashlib.blake2b()
                with open(split_dir / rel, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                out[f"{split_dir.name}/{rel}"] = h.hexdigest()
    return out


def leftovers(cache: Path) -> list[str]:
    """Temp files, chunk files or slice markers a finished build should not leave."""
    rels = [p.relative_to(cache) for p in cache.rglob("*")]
    return sorted(str(r) for r in rels
                  if ".spill-" in r.name or ".tmp-" in r.name or (len(r.parts) >= 2 and r.parts[1] == "slices"))


# --------------------------------------------------------------------------- Ray


@dataclass
class RayFacts:
    address: str = ""
    start_s: float = 0.0
    connect_s: float = 0.0
    cold_s: float = 0.0  # the first task on each node of a new job: fresh workers
    per_task_ms: float = 0.0  # EMPTY_TASKS submitted at once and gathered, divided
    round_trip_ms: float = 0.0  # one task submitted and waited for, SERIAL_TASKS times
    idle_cores: float = 0.0  # the cluster's own CPU while idle
    version: str = ""


def start_cluster() -> tuple[Any, RayFacts]:
    from ray.cluster_utils import Cluster

    before = {p.pid for p in psutil.Process().children()}
    t = time.perf_counter()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    facts = RayFacts(c.address, time.perf_counter() - t)
    global RAY_CPU
    RAY_CPU = RayCpu([p for p in psutil.Process().children() if p.pid not in before]).start()
    return c, facts


def ray_overheads(facts: RayFacts) -> None:
    """Driver connection, fresh workers and the per-task cost of empty tasks, from a driver in this process
    (disconnected after, so the runs' drivers find the cluster as a user's would)."""
    import ray

    facts.version = ray.__version__
    t = time.perf_counter()
    # a runtime_env as the CLI's: the cluster's idle workers do not match it, fresh ones start
    ray.init(address=facts.address, _node_ip_address="127.0.0.1", logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"NODES_BENCH": "1"}})
    facts.connect_s = time.perf_counter() - t

    @ray.remote(num_cpus=1)
    def noop() -> None:
        return None

    try:
        t = time.perf_counter()
        ray.get([noop.remote() for _ in range(2)])
        facts.cold_s = time.perf_counter() - t
        ray.get([noop.remote() for _ in range(20)])  # warm
        t = time.perf_counter()
        ray.get([noop.remote() for _ in range(EMPTY_TASKS)])
        facts.per_task_ms = (time.perf_counter() - t) / EMPTY_TASKS * 1e3
        t = time.perf_counter()
        for _ in range(SERIAL_TASKS):
            ray.get(noop.remote())
        facts.round_trip_ms = (time.perf_counter() - t) / SERIAL_TASKS * 1e3
    finally:
        ray.shutdown()
    time.sleep(1.0)
    with Meter() as m:
        c0 = RAY_CPU.total() if RAY_CPU else 0.0
        time.sleep(3.0)
        c1 = RAY_CPU.total() if RAY_CPU else 0.0
    facts.idle_cores = (c1 - c0) / m.time.seconds


# --------------------------------------------------------------------------- fixed costs and rates


def tiny_text(out: Path) -> Path:
    """Two shards of a few lines: a build of it costs what every build pays besides the text (one piece per
    slice)."""
    d = out / "nodes_tiny_text"
    write_file(d / "a.txt", "Hello world. สวัสดีครับ\nภาษาไทย และ English\n".encode())
    write_file(d / "b.txt", "Another shard. ข้อมูล ภาษา\nเมือง คน\n".encode())
    return d


def fresh_process_costs(tok: Tok) -> dict[str, float]:
    """A fresh interpreter's imports (as a worker's: torch blocked) and the tokenizer load, in seconds."""
    code = (
        "import sys, time, json; t0 = time.perf_counter(); sys.path.insert(0, sys.argv[1]); "
        "sys.modules.setdefault('torch', None); import preprocess.encode, common.tokenizer; "
        "t1 = time.perf_counter(); from common.tokenizer import load_tokenizer; "
        "load_tokenizer(sys.argv[2], sys.argv[3]); t2 = time.perf_counter(); import ray; t3 = time.perf_counter(); "
        "print(json.dumps({'imports': t1 - t0, 'load': t2 - t1, 'ray_import': t3 - t2}))"
    )
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, str(REPO), str(tok.dir), tok.type], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    wall = time.perf_counter() - t
    if r.returncode != 0:
        log(f"fresh-process costs of {tok.name} failed: {r.stderr[-500:]}")
        return {}
    got = json.loads(r.stdout.strip().splitlines()[-1])
    got["interpreter"] = wall - sum(got.values())
    return got


def hash_rate(corpus: Corpus, task_size_mb: float) -> float:
    """MB/s preprocess's shard scan (what a commit and a driver do to all the text) reads and hashes this corpus
    at, page cache warm, in a child."""
    code = ("import sys, time; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from preprocess.formats import TEXT; from preprocess.scan import scan_shards; "
            "ps = [Path(p) for p in sys.argv[3:]]; "
            "t = time.perf_counter(); scan_shards(ps, [TEXT] * len(ps), int(float(sys.argv[2]) * (1 << 20)), column='text'); "
            "print(time.perf_counter() - t)")
    best = float("inf")
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code, str(REPO), str(task_size_mb),
                            *(str(p) for p in corpus.shards)], cwd=REPO, capture_output=True, text=True, check=True)
        best = min(best, float(r.stdout.strip().splitlines()[-1]))
    return corpus.mb / best


# --------------------------------------------------------------------------- report


@dataclass
class TokResult:
    tok: Tok
    corpus: Corpus
    best: dict[str, Run] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    fixed: dict[str, Run] = field(default_factory=dict)
    identical: bool = False
    compared: int = 0
    differing: list[str] = field(default_factory=list)
    left: dict[str, list[str]] = field(default_factory=dict)
    fresh: dict[str, float] = field(default_factory=dict)

    def ratio(self, executor: str) -> float:
        return self.best[LOCAL].seconds / self.best[executor].seconds

    def marginal(self, executor: str) -> float:
        """MB/s with the fixed cost (the tiny build's wall time) taken out; nan where that leaves nothing."""
        left = self.best[executor].seconds - self.fixed[executor].seconds if executor in self.fixed else 0.0
        return self.corpus.mb / left if left > 0 else float("nan")


def fmt_runs(xs: list[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in xs)


def main_table(results: list[TokResult]) -> list[str]:
    out = ["| tokenizer | executor | wall s | MB/s | vs local | target (≥ 0.85x) | commit s | "
           "commit as % of the slices' build | others' cores | runs (s) | vs local, medians |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for ex in EXECUTORS:
            b = r.best[ex]
            ratio = r.ratio(ex)
            target = "" if ex == LOCAL else f"{'ok' if ratio >= TARGET else 'MISSED'}"
            commit = f"{b.commit:.2f}" if ex == SLICES else ""
            share = f"{b.commit / b.build:.1%}" if ex == SLICES else ""
            out.append(f"| {r.tok.name} | {ex} | {b.seconds:.2f} | {r.corpus.mb / b.seconds:.2f} | {ratio:.2f}x | "
                       f"{target} | {commit} | {share} | {b.time.others:.2f} | {fmt_runs(r.runs[ex])} | "
                       f"{statistics.median(r.runs[LOCAL]) / statistics.median(r.runs[ex]):.2f}x |")
    return out


def cost_table(results: list[TokResult]) -> list[str]:
    out = ["| tokenizer | executor | fixed cost s (2-shard, 4-line corpus) | wall s less fixed | "
           "marginal MB/s | marginal vs local | CLI's own s (after imports) | notes |",
           "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for ex in EXECUTORS:
            if ex not in r.fixed:
                continue
            b, f = r.best[ex], r.fixed[ex]
            notes = ""
            if ex == SLICES:
                notes = (f"slices {fmt_runs(list(b.slices))} s, commit {b.commit:.2f} s; fixed: slices "
                         f"{fmt_runs(list(f.slices))} s, commit {f.commit:.2f} s")
            own = f"{b.own:.1f}" if b.own else ""
            m, m0 = r.marginal(ex), r.marginal(LOCAL)
            rate = f"{m:.2f}" if m == m else "n/a (noise: fixed cost above the run)"
            ratio = f"{m / m0:.2f}x" if m == m and m0 == m0 else "n/a"
            out.append(f"| {r.tok.name} | {ex} | {f.seconds:.2f} | {b.seconds - f.seconds:.2f} | {rate} | {ratio} | "
                       f"{own} | {notes} |")
    return out


def estimate(newmm: TokResult, rate_hash: float, task_size_mb: float, ray: RayFacts) -> list[str]:
    """100 GB of Thai text, newmm, 16 nodes x 32 cores, from the measured numbers."""
    cores = EST_NODES * EST_CORES
    mb = EST_BYTES / MB
    per_core = newmm.corpus.mb / newmm.best[LOCAL].seconds / WORKERS  # start-up included: conservative
    ideal = mb / (cores * per_core)
    e_ray, e_slices = newmm.ratio(RAY), newmm.ratio(SLICES)
    sl = newmm.best[SLICES]
    e_build = newmm.best[LOCAL].seconds / sl.build
    share = sl.commit / sl.build
    t_ray = ideal / e_ray
    t_build = ideal / e_build
    t_slices = t_build * (1 + share)
    n_tasks = mb / (task_size_mb * (1 << 20) / MB)
    commit_fixed = max(newmm.fixed[SLICES].commit, 0.0) if SLICES in newmm.fixed else 0.0
    t_commit_bytes = commit_fixed + mb / rate_hash
    t_hash_driver = mb / rate_hash

    def hm(s: float) -> str:
        return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"

    return [
        f"## Estimate: {EST_BYTES / 1e9:.0f} GB of Thai text, newmm, {EST_NODES} nodes x {EST_CORES} cores",
        "",
        f"Per-core newmm throughput from the local run: {newmm.corpus.mb:.1f} MB / "
        f"{newmm.best[LOCAL].seconds:.1f} s / {WORKERS} cores = {per_core:.2f} MB/s per core (start-up included). "
        f"At {cores} cores with linear scaling that is {mb:,.0f} MB / ({cores} x {per_core:.2f} MB/s) = "
        f"{hm(ideal)} of tokenizing at local-executor efficiency. Ray ran at {e_ray:.2f}x the local executor here, "
        f"so about **{hm(t_ray)}** on Ray. The slices ran at {e_slices:.2f}x in all: they built at {e_build:.2f}x "
        f"and their commit added "
        f"{share:.1%} of the build ({sl.commit:.1f} s after {sl.build:.1f} s), so about {hm(t_build)} + "
        f"{hm(t_build * share)} = **{hm(t_slices)}** as {EST_NODES} slices and a commit if the commit share held. "
        f"It does not: the commit (like the Ray driver before it submits a task) reads and hashes all the text on "
        f"ONE node, here at {rate_hash:.0f} MB/s ({HASH_THREADS} threads, page cache warm), so at "
        f"{EST_BYTES / 1e9:.0f} GB the commit alone is about {hm(t_commit_bytes)} (its fixed cost "
        f"{commit_fixed:.1f} s + {mb:,.0f} MB at {rate_hash:.0f} MB/s), and a Ray run spends about "
        f"{hm(t_hash_driver)} hashing on the driver before the {hm(t_ray)} above: about "
        f"{hm(t_build + t_commit_bytes)} sliced and {hm(t_ray + t_hash_driver)} on Ray end to end. "
        f"Ray's per-task cost is small: {n_tasks:,.0f} tasks of --task_size_mb {task_size_mb:g} x "
        f"{ray.per_task_ms:.2f} ms = {n_tasks * ray.per_task_ms / 1e3:.0f} s of driver time, overlapped with the "
        "work. Assumptions: throughput scales linearly per core (newmm is CPU-bound, one process per core, no "
        "shared state); the shared file system is not the bottleneck (it must deliver "
        f"{cores * per_core:,.0f} MB/s of text to the workers and take their arrays); the measured per-core rate "
        "is on this English+Thai corpus (Thai-only text segments at another rate); the efficiency measured at "
        f"{newmm.corpus.mb:.0f} MB on {WORKERS} cores includes start-up that a {hm(ideal)} run amortizes "
        "(see the marginal column above), so these are upper bounds on the tokenizing part.",
    ]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=50, help="MB of text (default 50)")
    ap.add_argument("--newmm_mb", type=float, default=None,
                    help="MB of text for the newmm rows (default: --mb; a separate corpus of this size if less)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs per row; the best counts (default 2)")
    ap.add_argument("--tokenizers", default="wordpiece,newmm", help="which (default wordpiece,newmm)")
    ap.add_argument("--task_size_mb", type=float, default=4.0,
                    help="preprocess's --task_size_mb default (used for the estimate and the hash rate only)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quiet_s", type=float, default=30,
                    help="before each run, wait up to this long for other processes to calm down (default 30)")
    ap.add_argument("--tries", type=int, default=3,
                    help="runs of one measurement while other processes disturb it; the calmest (default 3)")
    ap.add_argument("--skip_fixed", action="store_true", help="skip the fixed-cost builds of a tiny corpus")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out", help="corpus/tokenizer cache and work dir")
    ap.add_argument("--smoke", action="store_true", help="2 MB, one repeat, no waiting: proves the script")
    a = ap.parse_args(argv)
    if a.smoke:
        a.mb, a.newmm_mb, a.repeats, a.quiet_s, a.tries = 2, 2, 1, 0, 1
    a.out = a.out.resolve()
    kinds = [k.strip() for k in a.tokenizers.split(",") if k.strip()]
    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    a.out.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(a.out, a.mb, a.seed)
    corpora = {"wordpiece": corpus, "newmm": corpus}
    if a.newmm_mb is not None and a.newmm_mb < a.mb:
        corpora["newmm"] = make_corpus(a.out, a.newmm_mb, a.seed)
    toks = {}
    for kind in kinds:
        toks.update(train_tokenizers(a.out, corpora[kind], [kind]))
    results = [TokResult(toks[k], corpora[k], runs={ex: [] for ex in EXECUTORS}) for k in kinds]
    logs = a.out / "logs" / "nodes"
    root = Path(tempfile.mkdtemp(prefix="nodes_", dir=a.out))
    tiny = tiny_text(root)
    cluster = None
    try:
        log("starting a 2-node x 1-CPU Ray cluster on loopback")
        cluster, ray_facts = start_cluster()
        log(f"Ray cluster up in {ray_facts.start_s:.1f} s at {ray_facts.address}")
        ray_overheads(ray_facts)
        log(f"Ray: connect {ray_facts.connect_s:.2f} s, fresh workers {ray_facts.cold_s:.2f} s, "
            f"{ray_facts.per_task_ms:.2f} ms/task, idle {ray_facts.idle_cores:.2f} cores")
        for rep in range(a.repeats):
            for r in results:
                # interleaved; the order turns each repeat so no executor always runs first
                order = EXECUTORS[rep % 3:] + EXECUTORS[: rep % 3]
                for ex in order:
                    cache = root / r.tok.name / SLUG[ex]
                    run = calm_run(r.tok, r.corpus.dir, cache, ex, ray_facts.address, logs,
                                   f"{r.tok.name}_{SLUG[ex]}_{rep}", a.quiet_s, a.tries)
                    extra = f" (slices {fmt_runs(list(run.slices))}, commit {run.commit:.1f})" if ex == SLICES else ""
                    log(f"{r.tok.name}, {ex}, run {rep + 1}: {run.seconds:.1f} s{extra}; others "
                        f"{run.time.others:.2f} cores")
                    r.runs[ex].append(run.seconds)
                    if ex not in r.best or run.seconds < r.best[ex].seconds:
                        r.best[ex] = run
                if not a.skip_fixed:
                    for ex in order:
                        run = calm_run(r.tok, tiny, root / "tiny" / r.tok.name / SLUG[ex], ex,
                                       ray_facts.address, logs, f"tiny_{r.tok.name}_{SLUG[ex]}_{rep}",
                                       a.quiet_s, a.tries)
                        if ex not in r.fixed or run.seconds < r.fixed[ex].seconds:
                            r.fixed[ex] = run
        for r in results:
            ids = {ex: cache_identity(root / r.tok.name / SLUG[ex]) for ex in EXECUTORS}
            ref = ids[LOCAL]
            r.compared = len(ref)
            r.differing = sorted({k for ex in (RAY, SLICES) for k in set(ref) | set(ids[ex])
                                  if ref.get(k) != ids[ex].get(k)})
            r.identical = not r.differing and r.compared > 0
            r.left = {ex: leftovers(root / r.tok.name / SLUG[ex]) for ex in EXECUTORS}
            r.fresh = fresh_process_costs(r.tok)
        rate_hash = hash_rate(corpus, a.task_size_mb)
    finally:
        if RAY_CPU is not None:
            RAY_CPU.stop()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)

    shown = shlex.join(["python", "bench/nodes_bench.py", *(sys.argv[1:] if argv is None else argv)])
    tok_names = ", ".join(f"{r.tok.name} ({r.corpus.mb:.1f} MB)" for r in results)
    out = [f"# Many cores and nodes: local vs Ray vs slices, {WORKERS} cores, {tok_names}", "",
           f"- bench: `{shown}`; machine: {os.cpu_count()} cores, load average {load_before:.2f} at the start",
           f"- text: {len(corpus.shards)} shards of English+Thai lines ({corpus.mb:.1f} MB, "
           f"bench/preprocess_bench.py's generator, Thai words from {corpus.thai_source}); WordPiece "
           f"(vocab {WORDPIECE_VOCAB:,}) and newmm (min frequency {NEWMM_MIN_FREQUENCY}) trained on a "
           f"{SAMPLE_MB} MB sample of it",
           "- each run: `" + shlex.join(["python", *command(Tok("", Path("<tok>"), "<auto|newmm>"), Path("<text>"),
                                                          Path("<fresh cache>"))[1:]]) + "` plus: "
           f"{LOCAL}: `--num_workers 2`; {RAY}: `--executor ray --ray_address <cluster>`; {SLICES}: "
           "`--num_workers 1 --num_slices 2 --slice 0` and `--slice 1` at once, then `--num_workers 1` (the commit)",
           f"- wall s: the subprocesses, start-up included (slices: both slices, then the commit); best of "
           f"{a.repeats} interleaved runs (the last column: the runs' medians, less sensitive to one lucky run); "
           f"\"others' cores\": CPU other processes used meanwhile (the Ray cluster's "
           f"processes count as ours; a run disturbed by more than {NOISE_CORES} cores is taken again, up to "
           f"{a.tries} tries)", "",
           *main_table(results), ""]
    all_same = all(r.identical for r in results)
    for r in results:
        line = (f"- {r.tok.name}: caches of {', '.join(EXECUTORS)} byte-identical: "
                f"{'yes' if r.identical else 'NO'} ({r.compared} items compared: every tokens/lines/blocks file "
                "the manifest names, and the manifest less created_by)")
        if r.differing:
            line += f"; differing: {', '.join(r.differing[:6])}"
        out.append(line)
        for ex, left in r.left.items():
            if left:
                out.append(f"- {r.tok.name}, {ex}: left in the cache: {', '.join(left[:6])}")
    out += [f"- byte-identical caches from all three executors: {'yes' if all_same else 'no'}", ""]

    out += ["## Ray overheads (2 nodes x 1 CPU on loopback)", "",
            "| cluster start-up s | driver connect (ray.init) s | first task on each node, fresh workers s | "
            f"per task, {EMPTY_TASKS} empty tasks at once, ms | round trip, one task at a time, ms | "
            "idle cluster's CPU, cores |",
            "|---|---|---|---|---|---|",
            f"| {ray_facts.start_s:.2f} | {ray_facts.connect_s:.2f} | {ray_facts.cold_s:.2f} | "
            f"{ray_facts.per_task_ms:.2f} | {ray_facts.round_trip_ms:.2f} | {ray_facts.idle_cores:.2f} |", "",
            f"- Ray {ray_facts.version}; the cluster's start-up is not in any run's wall time; the driver here used a "
            "runtime_env (as the CLI does), so its first tasks waited for workers to start", ""]

    out += ["## Where the time goes", ""]
    if any(r.fixed for r in results):
        out += cost_table(results) + [""]
    out += ["| tokenizer | fresh interpreter s | imports (preprocess.encode, common.tokenizer; torch blocked) s | "
            "tokenizer load s | import ray s | paid by |",
            "|---|---|---|---|---|---|"]
    for r in results:
        f = r.fresh
        if f:
            who = ("Ray workers rebuild the backend from the driver's JSON (no load); the local executor's "
                   "workers fork after the driver's load" if r.tok.type == "auto" else
                   "every Ray worker process (once) and every slice; the local executor's workers fork after the "
                   "driver's load")
            out.append(f"| {r.tok.name} | {f['interpreter']:.2f} | {f['imports']:.2f} | {f['load']:.2f} | "
                       f"{f['ray_import']:.2f} | {who} |")
    out += ["", f"- hashing rate of preprocess's shard scan on this corpus: {rate_hash:.0f} MB/s ({HASH_THREADS} "
            "threads, page cache warm): every plain run, the commit and the Ray driver read and hash all the text "
            "before (or instead of) tokenizing; a slice hashes only its own shards", ""]

    newmm = next((r for r in results if r.tok.type == "newmm"), None)
    if newmm is not None:
        out += estimate(newmm, rate_hash, a.task_size_mb, ray_facts) + [""]
    out.append(f"- bench wall time: {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.2f} "
               "at the end")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
