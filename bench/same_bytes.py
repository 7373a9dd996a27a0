#!/usr/bin/env python
"""Caches built by this tree and by an earlier commit, compared byte for byte.

A refactor of the preprocess stage must leave every cache exactly as it was:
same files, same arrays, same records, same manifests (less the time each
was written). This builds four caches twice, once with the source of
``--before`` (a git worktree of that commit, run on the same Python and
packages) and once with this tree, from the same inputs at the same paths,
and compares every file:

* ``readme``: the README's stage block (SentencePiece, ``--add_space_token``,
  train + eval, ``--max_seq_length 128``) on the demo corpus;
* ``sliced``: the same text in small pieces, built by 2 slices, then committed;
* ``ray``: the same, on a local Ray instance of 2 CPUs (skipped without Ray);
* ``formats``: the text as Parquet + ``.jsonl.zst`` shards, with a held-out split;
* ``edited``: the ``sliced`` text in small pieces, then rebuilt after one shard was edited, one
  removed and one added (most pieces reused, as their manifest lists them).

    python bench/same_bytes.py --before fe56d8f

Prints one row a cache and exits 1 if any differs. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP = {".lock"}  # the lock file holds the host.pid of its last holder


def sh(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env(cwd))
    if r.returncode:
        raise SystemExit(f"failed in {cwd}: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")


def _env(src: Path) -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(src), "TOKENIZERS_PARALLELISM": "false"}


def make_inputs(d: Path) -> Path:
    """The demo corpus, its Parquet + jsonl.zst copy and the README's tokenizer, once."""
    if (d / "done").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    sh([sys.executable, "scripts/make_corpus.py", "--out", str(d / "text"), "--lines", "1500"], REPO)
    sh([sys.executable, "-m", "preprocess.train_tokenizer", "--type", "spm", "--train_dir", str(d / "text/train"),
        "--vocab_size", "2000", "--output_dir", str(d / "spm"), "--add_space_token"], REPO)
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    mixed = d / "mixed"
    mixed.mkdir()
    for k, p in enumerate(sorted((d / "text/train").glob("*.txt"))):
        lines = p.read_text(encoding="utf-8").splitlines()
        docs = ["\n".join(lines[i : i + 3]) for i in range(0, len(lines), 3)]
        if k % 2:
            body = "".join(json.dumps({"content": t, "id": i}, ensure_ascii=False) + "\n" for i, t in enumerate(docs))
            (mixed / f"{p.stem}.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
        else:
            pq.write_table(pa.table({"content": docs, "n": list(range(len(docs)))}), mixed / f"{p.stem}.parquet",
                           row_group_size=200)
    edited = d / "edited"
    shutil.copytree(d / "text/train", edited)
    shards = sorted(edited.glob("*.txt"))
    shards[0].write_text(shards[0].read_text(encoding="utf-8") + "one more line at the end\n", encoding="utf-8")
    shards[1].rename(edited / "zz_added.txt")  # one removed, one added
    (d / "done").write_text("")
    return d


def builds(inputs: Path, cache: Path, ray: bool) -> dict[str, list[list[str]]]:
    """Each cache's preprocess commands (run in order), all paths absolute."""
    base = ["--tokenizer_name_or_path", str(inputs / "spm"), "--tokenizer_type", "spm", "--add_space_token"]
    text = ["--train_dir", str(inputs / "text/train"), "--eval_dir", str(inputs / "text/eval")]
    small = ["--task_size_mb", "0.01", "--num_workers", "2"]
    out = {
        "readme": [[*base, *text, "--datasets_cache_dir", str(cache / "readme"), "--max_seq_length", "128"]],
        "sliced": [[*base, *text, "--datasets_cache_dir", str(cache / "sliced"), "--max_seq_length", "64", *small,
                    *more] for more in (["--num_slices", "2", "--slice", "0"], ["--num_slices", "2", "--slice", "1"], [])],
        "formats": [[*base, "--train_dir", str(inputs / "mixed"), "--ext", "parquet,jsonl.zst", "--text_column",
                     "content", "--validation_split_percentage", "10", "--datasets_cache_dir",
                     str(cache / "formats"), "--max_seq_length", "64", *small]],
    }
    out["edited"] = [[*base, "--train_dir", str(inputs / train), "--datasets_cache_dir", str(cache / "edited"),
                      "--max_seq_length", "64", *small] for train in ("text/train", "edited")]
    if ray:
        out["ray"] = [[*base, *text, "--datasets_cache_dir", str(cache / "ray"), "--max_seq_length", "64", *small,
                       "--executor", "ray"]]
    return out


def files(d: Path) -> dict[str, bytes]:
    """Every file of a cache by relative path; a manifest without the time it was written."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and p.name not in SKIP:
            data = p.read_bytes()
            if p.name == "manifest.json":
                data = re.sub(rb'"created_at": "[^"]*"', b'"created_at": ""', data)
            out[str(p.relative_to(d))] = data
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the commit to compare against (e.g. the one before a change)")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "same_bytes")
    args = ap.parse_args()
    out = args.out.resolve()
    inputs = make_inputs(out / "inputs")
    src = out / "before_src"
    if src.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(src)], cwd=REPO, capture_output=True)
        shutil.rmtree(src, ignore_errors=True)
    sh(["git", "worktree", "add", "--detach", str(src), args.before], REPO)
    ray = importlib.util.find_spec("ray") is not None
    built: dict[str, dict[str, dict[str, bytes]]] = {}
    try:
        for who, code in (("before", src), ("now", REPO)):
            cache = out / "cache"  # the same paths both times: the manifests name them
            shutil.rmtree(cache, ignore_errors=True)
            for name, runs in builds(inputs, cache, ray).items():
                for flags in runs:
                    sh([sys.executable, "-m", "preprocess", *flags], code)
                built.setdefault(name, {})[who] = files(cache / name)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(src)], cwd=REPO, capture_output=True)
    print(f"| cache (vs {args.before}) | files | arrays | bytes | identical |")
    print("|---|---|---|---|---|")
    bad = 0
    for name, pair in built.items():
        a, b = pair["before"], pair["now"]
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        bad += bool(diff)
        print(f"| {name} | {len(b)} | {sum(k.endswith('.npy') for k in b)} | {sum(map(len, b.values())):,} | "
              f"{'yes' if not diff else 'NO: ' + ', '.join(diff[:5])} |")
    if not ray:
        print("(ray: not installed, skipped)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
