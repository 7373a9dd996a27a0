#!/usr/bin/env python
"""The data order at scale: time to the first batch, and the blended index of a mixture, side by side.

Every measurement runs in a process of its own (peak memory is the child's
peak RSS less what it held after its imports):

1. time to the first batch of 256 and peak memory for one corpus of
   6x10^6, 6x10^7 and 6x10^8 blocks: ours (train/order.py: a permutation
   computed at the indices asked for) in random order and grouped by length,
   vs the order before this round (a seeded permutation of every block, then
   megabatches sorted by length, then a Python list of every index: the
   length-grouped sampler then the default), where it fits in memory;
2. the blended index of 8 corpora (weights 0.35 ... 0.01) for 10^6, 10^7 and
   10^8 samples: ours, every (corpus, block) pair computed in chunks, vs
   ``datasets.interleave_datasets(probabilities, seed)`` over the same 8
   corpora (as index datasets), where it runs at all.

``--smoke`` runs every row at tiny sizes: it proves the script, not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEIGHTS = [0.35, 0.25, 0.15, 0.1, 0.07, 0.05, 0.02, 0.01]
CORPUS_BLOCKS = [50_000_000, 20_000_000, 10_000_000, 5_000_000, 2_000_000, 1_000_000, 500_000, 100_000]
BATCH, SEED, MEGA = 256, 0, 50
MEMORY = 24 << 30  # this machine's; the old order needs ~70 bytes a block


def peak_mb(base_kb: int) -> float:
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024


def child(kind: str, n: int) -> dict:
    """One measurement, in this process."""
    import numpy as np

    from train.order import Corpus, DataOrder
    from train.sampling import SampleSampler

    lengths = None
    if kind.endswith("grouped"):  # the block index the dataset holds anyway; not counted as the order's
        lengths = np.random.default_rng(1).integers(100, 513, size=n, dtype=np.int32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if kind.startswith("ours"):
        strategy = "group_by_length" if kind.endswith("grouped") else "random"
        order = DataOrder([Corpus("c", lengths, 0, n)], [1.0], strategy, SEED, BATCH)
        it = iter(SampleSampler(order))
        first = [next(it) for _ in range(BATCH)]
    elif kind.startswith("before"):  # train/sampling.py before this round
        perm = np.random.default_rng([SEED, 0]).permutation(n)
        if kind.endswith("grouped"):
            mega = MEGA * BATCH
            perm = np.concatenate([g[np.argsort(-lengths[g], kind="stable")]
                                   for g in (perm[i : i + mega] for i in range(0, n, mega))])
        first = iter(perm.tolist())
        first = [next(first) for _ in range(BATCH)]
    elif kind == "blend_ours":
        corpora, offset = [], 0
        for blocks in CORPUS_BLOCKS:
            corpora.append(Corpus(f"c{len(corpora)}", None, offset, blocks))
            offset += blocks
        order = DataOrder(corpora, WEIGHTS, "random", SEED, BATCH)
        chunk = 1 << 21
        for at in range(0, n, chunk):
            order.blocks(at, min(chunk, n - at))
        first = order.blocks(0, BATCH).tolist()
    elif kind == "blend_datasets":
        from datasets import Dataset, interleave_datasets

        sizes = [max(1, int(round(w * n))) for w in WEIGHTS]  # each corpus as big as its share of n samples
        parts = [Dataset.from_dict({"i": np.arange(s, dtype=np.int64)}) for s in sizes]
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        mixed = interleave_datasets(parts, probabilities=WEIGHTS, seed=SEED)
        first = mixed[:BATCH]["i"]
    else:
        raise SystemExit(f"unknown kind {kind}")
    return {"seconds": time.perf_counter() - t, "peak_mb": peak_mb(base), "first": len(first)}


def measure(kind: str, n: int, timeout: float) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:100]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def cell(m: dict | None) -> str:
    if m is None:
        return "not run: over this machine's memory"
    if "error" in m:
        return f"fails: {m['error']}"
    return f"{m['seconds']:.2f} s, {m['peak_mb']:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--child", nargs=2, metavar=("KIND", "N"))
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", default="bench_out/mixture")
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]))))
        return 0
    blocks = [60_000, 600_000] if a.smoke else [6_000_000, 60_000_000, 600_000_000]
    samples = [10_000, 100_000] if a.smoke else [1_000_000, 10_000_000, 100_000_000]
    rows = ["| blocks in the corpus | ours, random: first batch | ours, grouped by length | before, grouped "
            "(the old default) | before, random |", "|---|---|---|---|---|"]
    for n in blocks:
        fits = n * 80 < MEMORY  # the old order: the permutation, its groups and a list of every index
        got = {k: measure(k, n, a.timeout) if k.startswith("ours") or fits else None
               for k in ("ours", "ours_grouped", "before_grouped", "before")}
        rows.append(f"| {n:,} | " + " | ".join(cell(got[k]) for k in got) + " |")
        print(rows[-1], file=sys.stderr, flush=True)
    rows += ["", "| samples of 8 corpora | ours: every (corpus, block) computed | datasets.interleave_datasets |",
             "|---|---|---|"]
    for n in samples:
        ours = measure("blend_ours", n, a.timeout)
        theirs = measure("blend_datasets", n, a.timeout) if n <= 10_000_000 else None
        rows.append(f"| {n:,} | {cell(ours)} | "
                    f"{cell(theirs) if theirs is not None else 'not run: ' + str(n) + ' rows of Arrow'} |")
        print(rows[-1], file=sys.stderr, flush=True)
    rows += ["", f"- command: `python bench/mixture.py {shlex.join(sys.argv[1:] if argv is None else argv)}`; "
             f"{os.cpu_count()} CPU cores; each cell a process of its own: seconds, and peak memory above what the "
             "process held after its imports (the blocks' lengths, which the dataset's index holds anyway, not "
             "counted); batch 256."]
    text = "\n".join(rows)
    print(text)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "mixture.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
