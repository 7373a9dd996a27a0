#!/usr/bin/env python
"""What the train stage costs before its first step: the text check, and a flag error or --help.

* ``--files`` one-line files (30,000 by default), preprocessed once with
  their mtimes an hour old (as text usually is): the check of the cache
  against its text, as mlm-train runs it by default (``--input_check stat``:
  list, stat, compare) against hashing every file (``hash``), and the
  manifest load that precedes both. Best of ``--repeats``, page cache warm.
* the time from the command to a flag error and to ``--help``: this tree's
  ``mlm-train`` against the same commands at ``--before`` (a git revision, run
  from a temporary worktree with this venv), best of ``--repeats`` each,
  interleaved.

Made-up words and a WordLevel tokenizer (bench/train_cpu.py), nothing downloaded.
``--smoke`` runs it small, in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

HOUR_NS = 3600 * 10**9


def make_files(d: Path, n: int) -> None:
    from small_files import lines_of, write_files

    write_files(d, lines_of(n, seed=2), 1)
    for p in d.iterdir():
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_NS))


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def check_rows(root: Path, n: int, repeats: int) -> list[tuple[str, float]]:
    from train_cpu import make_tokenizer

    from common.check import check_split
    from common.manifest import load_manifest
    from preprocess.__main__ import main as preprocess

    tok = make_tokenizer(5000, root / "tok")
    text, cache = root / "text", root / "cache"
    make_files(text, n)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = preprocess(["--tokenizer_name_or_path", str(tok), "--train_dir", str(text), "--datasets_cache_dir",
                         str(cache), "--max_seq_length", "128", "--num_workers", "2"])
    if rc != 0:
        raise SystemExit("preprocess failed")
    split = cache / "train"
    manifest = load_manifest(split)
    stat = check_split(split, input_dir=str(text), sizes=False, manifest=manifest, by_stat=True)
    full = check_split(split, input_dir=str(text), sizes=False, manifest=manifest)
    assert stat.usable and full.usable and len(stat.unchanged) == n, "the bench's cache must be fresh"
    assert stat.hashed == 0 and full.hashed == n
    return [
        ("manifest load", best(lambda: load_manifest(split), repeats)),
        (f"check by stat (default): {stat.hashed} files read",
         best(lambda: check_split(split, input_dir=str(text), sizes=False, manifest=manifest, by_stat=True), repeats)),
        (f"check by hash (--input_check hash): {full.hashed:,} files read",
         best(lambda: check_split(split, input_dir=str(text), sizes=False, manifest=manifest), repeats)),
    ]


COMMANDS = {
    "flag error (--learnig_rate)": ["--tokenizer_name_or_path", "t", "--datasets_cache_dir", "c",
                                    "--learnig_rate", "1"],
    "--help": ["--help"],
}


def cli_rows(root: Path, before: str, repeats: int) -> list[tuple[str, float, float]]:
    """(command, seconds at ``before``, seconds now) for each of COMMANDS, interleaved runs."""
    old = root / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), before], check=True,
                   capture_output=True)
    try:
        rows = []
        for name, args in COMMANDS.items():
            times: dict[Path, list[float]] = {old: [], REPO: []}
            for _ in range(repeats):
                for tree in (old, REPO):
                    t = time.perf_counter()
                    r = subprocess.run([sys.executable, "-m", "train", *args], cwd=tree, capture_output=True,
                                       env={**os.environ, "PYTHONPATH": str(tree)})
                    times[tree].append(time.perf_counter() - t)
                    if r.returncode not in (0, 2):
                        raise SystemExit(f"{tree}: mlm-train {name} exited {r.returncode}: {r.stderr[-300:]}")
            rows.append((name, min(times[old]), min(times[REPO])))
        return rows
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=30000, help="one-line text files (default 30000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", default="4151296", help="git revision to compare the command line with "
                    "(default: the last one before flags were known without importing transformers)")
    ap.add_argument("--smoke", action="store_true", help="500 files, one repeat: proves the script, in seconds")
    a = ap.parse_args(argv)
    if a.smoke:
        a.files, a.repeats = 500, 1
    root = Path(tempfile.mkdtemp(prefix="train_start_"))
    try:
        checks = check_rows(root, a.files, a.repeats)
        clis = cli_rows(root, a.before, a.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = [f"| {a.files:,} unchanged text files | seconds |", "|---|---|"]
    out += [f"| {name} | {s:.3f} |" for name, s in checks]
    out += ["", f"| mlm-train | before ({a.before}) s | now s | speed-up |", "|---|---|---|---|"]
    out += [f"| {name} | {b:.2f} | {n:.2f} | {b / n:.1f}x |" for name, b, n in clis]
    out += ["", f"- best of {a.repeats}; 2 cores; the check is common.check.check_split as mlm-train calls it",
            f"- command: `{shlex.join(['python', 'bench/train_start.py', *(sys.argv[1:] if argv is None else argv)])}`"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
