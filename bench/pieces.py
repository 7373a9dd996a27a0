#!/usr/bin/env python
"""The train stage on caches of many pieces: start-up and blocks/s at 100, 10,000 and 36,000 pieces.

Each cache is ``N`` text files of about 1.3 KB preprocessed at ``--task_size_mb
0.002``, so every file is a piece and holds about one block: the worst case
for the reader, where a random order reads a different piece at every block
(a real cache of 36,000 pieces holds ~1 TB at the default task size). Built
once with this tree's ``mlm-preprocess`` under ``--out`` and reused.

Per cache, each in a fresh process, for this tree and for ``--before`` (a git
revision run from a temporary worktree: the memory-mapped reader):

* start-up: what mlm-train does before it builds a model: manifest read,
  checks (``--input_check stat``), every block's length, the sampler's order;
* ``dataset[i]`` in random order, one process, after one pass over every
  block (each file's first open and check done): blocks/s, the reader alone;
* DataLoader(num_workers=2, batch 32) + MlmCollator in random order, after
  10 batches: blocks/s, what training sees (each worker's first opens included);
* the DataLoader again with the process's open-file limit at 1,024 (``ulimit
  -n 1024``, soft and hard), the limit many login nodes and Slurm jobs start with.

Rates are the median of ``--repeats`` runs; ratios are against the 100-piece
cache of the same tree. Made-up words and a WordLevel tokenizer
(bench/train_cpu.py), nothing downloaded. ``--smoke`` runs it small.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

SEQ = 512
LINES_PER_FILE = 20  # ~1.3 KB of made-up words a file
BATCH = 32


def build(root: Path, n: int) -> Path:
    """The ``n``-piece cache under ``root`` (built once, reused while its manifest exists); its dir."""
    from small_files import lines_of, write_files
    from train_cpu import make_tokenizer

    tok, text, cache = root / "tokenizer", root / f"text_{n}", root / f"cache_{n}"
    if not (tok / "tokenizer.json").exists():
        make_tokenizer(5000, tok)
    if (cache / "train" / "manifest.json").exists():
        return cache
    shutil.rmtree(text, ignore_errors=True)
    write_files(text, lines_of(n * LINES_PER_FILE, seed=3), LINES_PER_FILE)
    print(f"building the {n:,}-piece cache ...", file=sys.stderr)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(tok), "--train_dir", str(text),
                    "--datasets_cache_dir", str(cache), "--max_seq_length", str(SEQ), "--task_size_mb", "0.002",
                    "--num_workers", "2"], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    print(f"  built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return cache


def measure(cache: Path, repeats: int, reads: int, batches: int) -> dict[str, float | int | str]:
    """In this process (run as ``--measure``): start-up seconds and the three rates; an error's text
    where the tree cannot read the cache."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from common.config import CacheArguments
    from common.tokenizer import load_tokenizer
    from train.collator import MlmCollator
    from train.data import checked_datasets
    from train.order import Corpus, DataOrder
    from train.sampling import Keyed

    t = time.perf_counter()
    cfg = CacheArguments(tokenizer_name_or_path=str(cache.parent / "tokenizer"), datasets_cache_dir=str(cache),
                         max_seq_length=SEQ)
    loaded = load_tokenizer(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
    datasets = checked_datasets(cfg, loaded, "stat")
    datasets = datasets[0] if isinstance(datasets, tuple) else datasets  # (datasets, fix) before
    ds = datasets["train"]
    DataOrder([Corpus("train", ds.lengths(), 0)], [1.0], "random", 0, BATCH).blocks(0, len(ds))
    out: dict[str, float | int | str] = {"startup_s": time.perf_counter() - t, "pieces": len(ds.reader.manifest.pieces),
                                         "blocks": len(ds)}
    if hasattr(ds.reader, "close"):
        ds.reader.close()
    rng = np.random.default_rng(0)
    warm = rng.permutation(len(ds)).tolist()  # every block once: each file opened (and checked) a first time
    order = rng.integers(0, len(ds), reads).tolist()

    def items() -> float:
        for i in warm:
            ds[i]
        t = time.perf_counter()
        for i in order:
            ds[i]
        return reads / (time.perf_counter() - t)

    ids = loaded.identity.special_ids
    collate = MlmCollator(loaded.tokenizer, [ids.bos, ids.eos, ids.pad], ids.pad, 0.15, max_width=SEQ)

    def loader() -> float:
        sampler = RandomSampler(ds, replacement=True, num_samples=(batches + 10) * BATCH,
                                generator=torch.Generator().manual_seed(0))
        it = iter(DataLoader(Keyed(ds, 0), batch_size=BATCH, sampler=sampler, collate_fn=collate, num_workers=2))
        for _ in range(10):
            next(it)
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        rate = batches * BATCH / (time.perf_counter() - t)
        del it
        return rate

    try:
        out["items"] = statistics.median(items() for _ in range(repeats))
        out["loader"] = statistics.median(loader() for _ in range(repeats))
    except Exception as e:  # the memory-mapped reader past its limits: say how it failed
        out["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:120]}"
    return out


def warm_page_cache(split: Path) -> None:
    """Read every file of the split once, so no reader pays for the disk (every rate is page cache warm)."""
    for p in split.rglob("*.npy"):
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def run_measure(tree: Path, cache: Path, args: argparse.Namespace, nofile: int | None) -> dict:
    """``measure`` in a fresh process of ``tree``'s code, under ``ulimit -n nofile`` when given."""
    warm_page_cache(cache / "train")
    cmd = [sys.executable, str(REPO / "bench" / "pieces.py"), "--measure", str(cache), "--repeats", str(args.repeats),
           "--reads", str(args.reads), "--batches", str(args.batches)]
    if nofile:
        cmd = ["bash", "-c", f"ulimit -n {nofile} && exec {shlex.join(cmd)}"]
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tree), "BENCH_TREE": str(tree)})
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {r.returncode}: {last[:120]}"}
    return json.loads(lines[-1])


def rate(m: dict, key: str, base: dict | None) -> str:
    if key not in m:
        return "fails: " + m.get("error", "?").replace("|", "/") if "error" in m else "—"
    ratio = f" ({m[key] / base[key]:.2f}x)" if base and key in base else ""
    return f"{m[key]:,.0f}{ratio}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pieces", type=int, nargs="+", default=[100, 10_000, 36_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reads", type=int, default=30_000, help="timed dataset[i] reads per run")
    ap.add_argument("--batches", type=int, default=300, help="timed DataLoader batches per run")
    ap.add_argument("--before", default="8a2e2e4", help="git revision to compare with (default: the memory-mapped reader)")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "pieces")
    ap.add_argument("--smoke", action="store_true", help="100 and 1,200 pieces, one short run each")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.measure:
        sys.path.insert(0, os.environ.get("BENCH_TREE", str(REPO)))
        print(json.dumps(measure(a.measure, a.repeats, a.reads, a.batches)))
        return 0
    if a.smoke:
        a.pieces, a.repeats, a.reads, a.batches = [100, 1200], 1, 3000, 10
    a.out.mkdir(parents=True, exist_ok=True)
    caches = [build(a.out, n) for n in a.pieces]
    old = Path(tempfile.mkdtemp(prefix="pieces_before_")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), a.before], check=True,
                   capture_output=True)
    rows = []
    try:
        for n, cache in zip(a.pieces, caches):
            for name, tree in (("now", REPO), (f"before ({a.before})", old)):
                print(f"measuring {n:,} pieces, {name} ...", file=sys.stderr)
                rows.append((n, name, run_measure(tree, cache, a, None), run_measure(tree, cache, a, 1024)))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
        shutil.rmtree(old.parent, ignore_errors=True)
    base = {name: (m, lim) for n, name, m, lim in rows if n == a.pieces[0]}
    out = ["| pieces (blocks) | reader | start-up s | dataset[i] blocks/s | DataLoader(2 workers) blocks/s | "
           "same, ulimit -n 1024 |", "|---|---|---|---|---|---|"]
    for n, name, m, lim in rows:
        b, blim = base[name]
        startup = f"{m['startup_s']:.2f}" if "startup_s" in m else "—"
        out.append(f"| {n:,} ({m.get('blocks', 0):,}) | {name} | {startup} | {rate(m, 'items', b)} | "
                   f"{rate(m, 'loader', b)} | {rate(lim, 'loader', blim)} |")
    soft = subprocess.run(["bash", "-c", "ulimit -Sn; ulimit -Hn; cat /proc/sys/vm/max_map_count"],
                          capture_output=True, text=True).stdout.split()
    out += ["", f"- {a.repeats} runs each, the median; ratios against the {a.pieces[0]:,}-piece cache of the same reader; "
            f"{a.reads:,} random reads, {a.batches} batches of {BATCH} after 10; 2 cores, page cache warm; "
            f"ulimit -n {soft[0]} (hard {soft[1]}), vm.max_map_count {soft[2]}",
            f"- command: `{shlex.join(['python', 'bench/pieces.py', *(sys.argv[1:] if argv is None else argv)])}`"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
