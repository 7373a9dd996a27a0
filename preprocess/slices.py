"""A sliced build: N processes, on any nodes that share the cache dir, each tokenize their share.

``mlm-preprocess --num_slices N --slice K`` (a Slurm array fills both in)
works out every piece of every split from the shard list alone (names and
sizes: sharding.group_shards), gives each piece to a slice by the same rule
in every slice (``assign``), hashes and tokenizes only its own pieces,
writes them with their records, and exits without a manifest, leaving a
*marker* (``<split>/slices/<K>-of-<N>.json``) that says what it built. A
final plain run with the same flags finds every piece done (their records
are the completion markers the cache always had) and commits: it hashes the
text and writes the manifests, nothing more. The pieces are the ones a
single run would have written, so the cache is the same byte for byte
whatever the number of slices.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.format import FormatError
from common.manifest import read_json, write_json_atomic

MARKERS_DIR = "slices"
SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")


def slice_of(num_slices: int | None, slice_: int | None, env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """(K, N) of this run, or None for a plain run. The flags win; else a Slurm array task's position
    (its id less the array's first, over its step) and count. ``--num_slices 1`` is a plain run."""
    env = os.environ if env is None else env
    if num_slices is None and slice_ is None and all(v in env for v in SLURM_VARS):
        values = {v: env.get(v, default) for v, default in (("SLURM_ARRAY_TASK_ID", None), ("SLURM_ARRAY_TASK_MIN", "0"),
                                                           ("SLURM_ARRAY_TASK_STEP", "1"),
                                                           ("SLURM_ARRAY_TASK_COUNT", None))}
        bad = [f"{v}={x!r}" for v, x in values.items() if not str(x).strip().lstrip("-").isdigit()]
        if bad:
            raise UserError(f"{', '.join(bad)}: not {'an integer' if len(bad) == 1 else 'integers'}; pass "
                            "--num_slices and --slice")
        step = int(values["SLURM_ARRAY_TASK_STEP"]) or 1
        k = (int(values["SLURM_ARRAY_TASK_ID"]) - int(values["SLURM_ARRAY_TASK_MIN"])) // step
        n = int(values["SLURM_ARRAY_TASK_COUNT"])
        if n < 1 or not 0 <= k < n:
            raise UserError(f"the Slurm array gives slice {k} of {n} (SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT): "
                            "not a slice of it; pass --num_slices and --slice")
        print(f"note: slice {k} of {n} from the Slurm array ({SLURM_VARS[0]}); this run builds its share "
              "and writes no manifest. The commit step is a plain run (or --num_slices 1)", file=sys.stderr)
        num_slices, slice_ = n, k
    if num_slices is None:
        if slice_ is not None:
            raise UserError("--slice needs --num_slices (how many slices share the work)")
        return None
    if num_slices < 1:
        raise UserError(f"--num_slices {num_slices}: must be at least 1")
    if num_slices == 1:
        if slice_ not in (None, 0):
            raise UserError(f"--slice {slice_} with --num_slices 1: the only slice is 0")
        return None
    if slice_ is None:
        raise UserError(f"--num_slices {num_slices} needs --slice K: the slice this run builds, from 0 to "
                        f"{num_slices - 1} (or, for the commit step, neither flag)")
    if not 0 <= slice_ < num_slices:
        raise UserError(f"--slice {slice_}: give the slice this run builds, from 0 to {num_slices - 1}")
    return slice_, num_slices


def assign(piece_bytes: list[int], n: int) -> list[int]:
    """The slice of each piece: biggest pieces first, each to the slice with the fewest bytes so far
    (ties: the lower index). Depends only on the sizes and ``n``, so every slice agrees."""
    owner = [0] * len(piece_bytes)
    load = [0] * n
    for i in sorted(range(len(piece_bytes)), key=lambda i: (-piece_bytes[i], i)):
        k = min(range(n), key=lambda s: (load[s], s))
        owner[i] = k
        load[k] += piece_bytes[i]
    return owner


def marker_path(split_dir: Path, k: int, n: int) -> Path:
    return split_dir / MARKERS_DIR / f"{k}-of-{n}.json"


def write_marker(split_dir: Path, k: int, n: int, keys: list[str], tokenizer: dict[str, Any]) -> None:
    """Say that slice ``k`` of ``n`` built these pieces (written last: present means it finished)."""
    path = marker_path(split_dir, k, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"slice": k, "num_slices": n, "pieces": keys, "tokenizer": tokenizer})


def read_markers(split_dir: Path) -> list[dict[str, Any]]:
    """The markers of finished slices (unreadable ones skipped: a marker only informs)."""
    out = []
    d = split_dir / MARKERS_DIR
    if d.is_dir() and not d.is_symlink():
        for p in sorted(d.glob("*-of-*.json")):
            try:
                m = read_json(p)
            except FormatError:
                continue
            if isinstance(m, dict) and isinstance(m.get("num_slices"), int) and isinstance(m.get("pieces"), list):
                out.append(m)
    return out


def clear_markers(split_dir: Path) -> None:
    """Remove the markers once a commit wrote the manifest: the next plain run is an ordinary rerun."""
    d = split_dir / MARKERS_DIR
    if d.is_dir() and not d.is_symlink():
        for p in d.iterdir():
            if p.is_file() and not p.is_symlink() and p.name.endswith(".json"):
                p.unlink(missing_ok=True)
        try:
            d.rmdir()
        except OSError:  # something else is in it: leave it
            pass
