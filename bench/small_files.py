#!/usr/bin/env python
"""Corpora of awkward shapes: many small files, giant lines. One run, one table each.

* the same lines as 1 file and as ``--files`` files of a few lines each:
  FULL-SENTENCES blocks and how full they are (``--max_seq_length``),
  pieces (the default) against one piece per file (format 1's layout);
* ``--many`` one-line files: first build, cache files, and a rerun with
  nothing changed (no-op), each layout in its own fresh cache;
* ``--pieces`` files of about 1.3 KB at ``--task_size_mb 0.002``, so nearly
  every file is a piece of its own (the worst case for the metadata path):
  first build, a no-op rerun, ``mlm-inspect show`` and ``status``, each a
  fresh process timed from outside (start-up included);
* ``--giant_mb`` single-line files (no newline at all): peak RSS of the
  whole preprocess process tree (2 workers), sampled every 50 ms.

"one piece per file" is ``--task_size_mb 0.00001``: every file is a piece of
its own, as every file was its own set of arrays before pieces. Text is
made-up words (bench/train_cpu.py's corpus) with a WordLevel tokenizer, so
nothing is downloaded. ``--smoke`` runs it small, in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench.tree_rss import TreeRss  # noqa: E402

ONE_PER_FILE = "0.00001"  # 10 bytes: every file of 5 bytes or more is a piece alone


def lines_of(n: int, seed: int) -> list[str]:
    from train_cpu import make_corpus

    with tempfile.TemporaryDirectory() as d:
        make_corpus(Path(d), n, 5000, seed, mu=2.5)
        parts = [p.read_text().splitlines() for p in sorted(Path(d).glob("part*.txt"))]
    return [line for group in zip(*parts) for line in group][:n]


def write_files(d: Path, lines: list[str], per_file: int) -> int:
    d.mkdir(parents=True)
    for k in range(0, len(lines), per_file):
        (d / f"doc_{k // per_file:06d}.txt").write_text("\n".join(lines[k : k + per_file]) + "\n")
    return -(-len(lines) // per_file)


def preprocess(tok: Path, text: Path, cache: Path, seq_len: int, task_mb: str | None) -> float:
    from preprocess.__main__ import main

    flags = ["--tokenizer_name_or_path", str(tok), "--train_dir", str(text), "--datasets_cache_dir", str(cache),
             "--max_seq_length", str(seq_len), "--num_workers", "2"]
    if task_mb:
        flags += ["--task_size_mb", task_mb]
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(flags)
    if rc != 0:
        raise SystemExit(f"preprocess failed on {text}")
    return time.perf_counter() - t


def giant_line_rss(tok: Path, root: Path, mb: int, seq_len: int) -> tuple[float, float]:
    """(peak RSS MiB of the preprocess tree, seconds) on one file holding one ``mb`` MB line."""
    text = root / f"giant{mb}"
    text.mkdir()
    words = " ".join(lines_of(400, seed=3)).encode() + b" "
    with open(text / "line.txt", "wb") as f:
        for _ in range(mb * 1_000_000 // len(words) + 1):
            f.write(words)
    cmd = [sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(tok), "--train_dir", str(text),
           "--datasets_cache_dir", str(root / f"gcache{mb}"), "--max_seq_length", str(seq_len), "--num_workers", "2"]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    with TreeRss(p.pid) as rss:
        _, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"preprocess of a {mb} MB line failed: {err.decode()[-500:]}")
    shutil.rmtree(text)
    return rss.peak_sum / 2**20, time.perf_counter() - t


def timed(*args: str) -> float:
    """Seconds a command of this repo takes as a fresh process (what a user waits for)."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed: {r.stderr[-500:]}")
    return time.perf_counter() - t


def many_pieces(tok: Path, root: Path, n: int) -> tuple[int, float, float, float, float]:
    """(pieces, first build s, no-op rerun s, mlm-inspect show s, status s) of ``n`` files of ~1.3 KB; each
    rerun and view the median of 3, page cache warm."""
    from common.manifest import load_manifest

    text, cache = root / "pieces_text", root / "pieces_cache"
    write_files(text, lines_of(n * 20, seed=3), 20)
    flags = ["--tokenizer_name_or_path", str(tok), "--train_dir", str(text), "--datasets_cache_dir", str(cache),
             "--max_seq_length", "512", "--task_size_mb", "0.002", "--num_workers", "2"]
    first = timed("preprocess", *flags)
    os.sync()  # the build's writes flushed: the reruns do not wait behind them
    noop = statistics.median(timed("preprocess", *flags) for _ in range(3))
    show = statistics.median(timed("preprocess.inspect_cache", "show", str(cache)) for _ in range(3))
    status = statistics.median(timed("preprocess.inspect_cache", "status", str(cache)) for _ in range(3))
    return len(load_manifest(cache / "train").pieces), first, noop, show, status


def cache_files(cache: Path) -> int:
    return sum(1 for p in (cache / "train").rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=6000, help="lines of the blocks comparison (default 6000)")
    ap.add_argument("--files", type=int, default=3000, help="files those lines are split into (default 3000)")
    ap.add_argument("--many", type=int, default=30000, help="one-line files of the file-count rows (default 30000)")
    ap.add_argument("--pieces", type=int, default=36000, help="~1.3 KB files of the many-pieces row (default 36000)")
    ap.add_argument("--giant_mb", default="50,200", help="sizes of the single-line files, MB (default 50,200)")
    ap.add_argument("--max_seq_length", type=int, default=128)
    ap.add_argument("--smoke", action="store_true", help="a few hundred files: proves the script, in seconds")
    a = ap.parse_args(argv)
    if a.smoke:
        a.lines, a.files, a.many, a.pieces, a.giant_mb = 600, 300, 500, 300, "1"
    from train_cpu import make_tokenizer

    from common.reader import SplitReader

    root = Path(tempfile.mkdtemp(prefix="small_files_"))
    tok = make_tokenizer(5000, root / "tok")
    lines = lines_of(a.lines, seed=1)
    one = root / "one"
    write_files(one, lines, len(lines))
    split = root / "split"
    write_files(split, lines, max(1, a.lines // a.files))
    rows = []
    for name, text, task in (("1 file", one, None), (f"{a.files:,} files, pieces (default)", split, None),
                             (f"{a.files:,} files, one piece per file", split, ONE_PER_FILE)):
        cache = root / f"c{len(rows)}"
        preprocess(tok, text, cache, a.max_seq_length, task)
        r = SplitReader(cache / "train")
        fill = float(r.block_lengths().mean()) / a.max_seq_length
        rows.append((name, r.n_blocks, fill, len(r.manifest.pieces), cache_files(cache)))
    many = root / "many"
    write_files(many, lines_of(a.many, seed=2), 1)
    reruns = []
    for name, task in (("pieces (default)", None), ("one piece per file", ONE_PER_FILE)):
        cache = root / f"m{len(reruns)}"
        first = preprocess(tok, many, cache, a.max_seq_length, task)
        noop = preprocess(tok, many, cache, a.max_seq_length, task)
        reruns.append((name, first, noop, cache_files(cache)))
    pieces = many_pieces(tok, root, a.pieces)
    giants = [(mb, *giant_line_rss(tok, root, mb, a.max_seq_length)) for mb in map(int, a.giant_mb.split(","))]

    out = [f"| same {a.lines:,} lines as | blocks | mean block fill | pieces | cache files |", "|---|---|---|---|---|"]
    out += [f"| {n} | {b:,} | {f:.0%} | {p:,} | {c:,} |" for n, b, f, p, c in rows]
    out += ["", f"| {a.many:,} one-line files | first build s | no-op rerun s | cache files |", "|---|---|---|---|"]
    out += [f"| {n} | {f:.1f} | {z:.2f} | {c:,} |" for n, f, z, c in reruns]
    out += ["", f"| {a.pieces:,} files of ~1.3 KB, --task_size_mb 0.002 | pieces | first build s | no-op rerun s | "
            "mlm-inspect show s | mlm-inspect status s |", "|---|---|---|---|---|---|"]
    n, first, noop, show, status = pieces
    out += [f"| every file its own piece (nearly) | {n:,} | {first:.1f} | {noop:.2f} | {show:.2f} | {status:.2f} |"]
    out += ["", "| one line of | peak RSS, preprocess tree (MiB) | seconds |", "|---|---|---|"]
    out += [f"| {mb} MB | {rss:,.0f} | {sec:.0f} |" for mb, rss, sec in giants]
    base = reruns[1]
    out += ["", f"- pieces vs one piece per file: cache files {reruns[0][3]:,} vs {base[3]:,}, first build "
            f"{base[1] / reruns[0][1]:.2f}x faster, no-op rerun {base[2] / reruns[0][2]:.2f}x faster",
            f"- blocks of --max_seq_length {a.max_seq_length} ({a.pieces:,} files: 512); 2 workers; --task_size_mb 4 "
            f"(the default) for the giant lines; made-up words (bench/train_cpu.py); the {a.pieces:,} files' rerun "
            "and views: fresh processes, median of 3, page cache warm",
            f"- command: `{shlex.join(['python', 'bench/small_files.py', *(sys.argv[1:] if argv is None else argv)])}`"]
    print("\n".join(out))
    shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
