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


def shard_records(cache: Path, split: str = "train") -> list[dict]:
    """The manifest's shard records less ``mtime_ns``: when a file was last written, not what it holds."""
    return [{k: v for k, v in s.items() if k != "mtime_ns"} for s in manifest(cache, split)["shards"]]


def arrays(cache: Path, split: str = "train") -> dict[str, bytes]:
    """Every array the manifest names, by the shards its piece holds and kind: what 'byte-identical' compares."""
    m = manifest(cache, split)
    out, first = {}, 0
    for p in m["pieces"]:
        holds = ",".join(s["path"] for s in m["shards"][first : first + p["shards"]])
        first += p["shards"]
        for kind, f in [*p["files"].items(), ("blocks", p["blocks"]["file"])]:
            out[f"{holds}:{kind}"] = (cache / split / f["path"]).read_bytes()
    return out


def piece_of(cache: Path, split: str = "train") -> dict[str, dict]:
    """The manifest's piece entry of each shard, by shard path."""
    m = manifest(cache, split)
    out, first = {}, 0
    for p in m["pieces"]:
        for s in m["shards"][first : first + p["shards"]]:
            out[s["path"]] = p
        first += p["shards"]
    return out


def token_file_stats(cache: Path, split: str = "train") -> dict[str, int]:
    return {path: (cache / split / p["files"]["tokens"]["path"]).stat().st_mtime_ns
            for path, p in piece_of(cache, split).items()}


def lines_of(cache: Path, split: str = "train") -> list[np.ndarray]:
    from common.reader import SplitReader

    r = SplitReader(cache / split)
    return [line for k in range(len(r.manifest.pieces)) for line in r.lines(k)]
