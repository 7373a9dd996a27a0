"""Run the preprocess CLI in-process and read back what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from preprocess.__main__ import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def base_args(tok: Path, train: Path, cache: Path, *more: str) -> list[str]:
    return ["--tokenizer_name_or_path", str(tok), "--train_dir", str(train), "--datasets_cache_dir", str(cache),
            "--max_seq_length", "32", "--num_workers", "1", *more]


def manifest(cache: Path, split: str = "train") -> dict:
    return json.loads((cache / split / "manifest.json").read_text())


def arrays(cache: Path, split: str = "train") -> dict[str, bytes]:
    """Every array the manifest names, by shard path and kind: what 'byte-identical' compares."""
    m = manifest(cache, split)
    out = {}
    for s in m["shards"]:
        for kind, f in [*s["files"].items(), ("blocks", s["blocks"]["file"])]:
            out[f"{s['path']}:{kind}"] = (cache / split / f["path"]).read_bytes()
    return out


def token_file_stats(cache: Path, split: str = "train") -> dict[str, int]:
    m = manifest(cache, split)
    return {s["path"]: (cache / split / s["files"]["tokens"]["path"]).stat().st_mtime_ns for s in m["shards"]}


def lines_of(cache: Path, split: str = "train") -> list[np.ndarray]:
    from common.reader import SplitReader

    r = SplitReader(cache / split)
    return [line for k in range(len(r.manifest.shards)) for line in r.lines(k)]
