"""Arguments of the preprocess command: the shared cache arguments plus how to build the cache."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property

from common.config import CacheArguments
from common.errors import UserError
from preprocess.formats import Format, formats_of

MAX_WORKERS = 1024  # a process each: past this a typo (100000) would spend minutes forking


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class PreprocessConfig(CacheArguments):
    """The cache arguments, and how many processes build it, how big their tasks are, what to redo."""

    overwrite_cache: bool = field(default=False, metadata={"help": "Ignore all cached work and rebuild every split."})
    verify_outputs: bool = field(
        default=False,
        metadata={"help": "Re-hash every cached array a rerun would reuse and rebuild the damaged ones. A plain "
                  "rerun checks the arrays' shapes and sizes only: an array altered in place at the same size "
                  "is found by this flag or by mlm-inspect verify."},
    )
    num_workers: int = field(
        default_factory=available_cores, metadata={"help": "Tokenizer processes; all cores by default."}
    )
    task_size_mb: float = field(
        default=4.0,
        metadata={"help": "Shards bigger than this are split into newline-aligned byte ranges of about this size "
                  "(MiB, 2^20 bytes); a worker's memory peaks at about 4x this, whatever the shard size. Shards smaller than "
                  "half of it are grouped into pieces of about this size, each stored (and re-tokenized when "
                  "one of its files changes) as one stream."},
    )

    text_column: str = field(
        default="text",
        metadata={"help": "The field (JSON Lines) or column (Parquet) holding each document's text; no other "
                  "column is read."},
    )
    strict: bool = field(
        default=False,
        metadata={"help": "Stop at the first record without usable text (not JSON, no --text_column, null or "
                  "not a string, damaged compressed data) instead of counting it in the manifest and warning."},
    )

    validation_split_percentage: float | None = field(
        default=None,
        metadata={"help": "Without --eval_dir: hold out about this percent of the --train_dir documents (a .txt "
                  "line, a JSON Lines record, a Parquet row) as <cache>/validation, chosen by a seeded hash of "
                  "each document's text: the same whatever the file order or worker count, and editing one shard "
                  "moves only its own documents. Default: no held-out split."},
    )
    validation_split_seed: int = field(
        default=42, metadata={"help": "Seed of the held-out split's hash (--validation_split_percentage)."}
    )

    num_slices: int | None = field(
        default=None,
        metadata={"help": "Split the work between this many runs (Slurm array tasks, nodes) sharing the cache dir: "
                  "each tokenizes its share (--slice) and writes no manifest; then one plain run with the same "
                  "flags commits in seconds. In a Slurm array, SLURM_ARRAY_TASK_ID/COUNT fill both in "
                  "(--num_slices 1: a whole, plain run)."},
    )
    slice: int | None = field(default=None, metadata={"help": "Which slice this run builds, 0 .. --num_slices - 1."})
    executor: str = field(
        default="local",
        metadata={"help": "local: --num_workers processes here; ray: the tasks on a Ray cluster whose nodes share "
                  "the cache dir (pip install .[ray]), local Ray of --num_workers CPUs without --ray_address."},
    )
    ray_address: str | None = field(
        default=None, metadata={"help": "With --executor ray: the cluster to join, auto or HOST:PORT."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.executor not in ("local", "ray"):
            raise UserError(f"--executor {self.executor!r}: local or ray")
        if self.ray_address and self.executor != "ray":
            raise UserError("--ray_address is for --executor ray; add it, or drop --ray_address")
        if self.executor == "ray" and self.num_slices not in (None, 1):
            raise UserError("--executor ray and --num_slices are two ways to use many nodes: pick one")
        p = self.validation_split_percentage
        if p is not None:
            if not (math.isfinite(p) and 0 < p < 100):
                raise UserError(f"--validation_split_percentage {p}: must be between 0 and 100 (exclusive)")
            if self.eval_dir:
                raise UserError("--validation_split_percentage holds out part of --train_dir, but --eval_dir is "
                                "given too: keep one of them")
        _ = self.formats  # refuses an extension no reader takes (parquet.gz), of one or several
        if not self.text_column:
            raise UserError("--text_column is empty; give the field or column holding the text, e.g. text")
        if not 1 <= self.num_workers <= MAX_WORKERS:
            raise UserError(f"--num_workers {self.num_workers}: must be between 1 and {MAX_WORKERS} "
                            f"(this machine has {available_cores()} cores)")
        if not (math.isfinite(self.task_size_mb) and 0 < self.task_size_mb <= 1 << 20):
            raise UserError(f"--task_size_mb {self.task_size_mb}: must be a positive number of MiB")

    def splits(self) -> list[tuple[str, str]]:
        """(split name, input dir) pairs to build, train first; a held-out split reads --train_dir."""
        out = super().splits()
        if self.validation_split_percentage is not None:
            out.append(("validation", out[0][1]))
        return out

    def select(self, split: str) -> tuple[float, int, bool] | None:
        """How ``split`` takes its documents from --train_dir with a held-out split: (fraction, seed,
        held-out side); None without one."""
        if self.validation_split_percentage is None:
            return None
        return self.validation_split_percentage / 100, self.validation_split_seed, split == "validation"

    @cached_property
    def formats(self) -> dict[str, Format]:
        """The format of each extension of --ext, resolved here once; the pipeline only reads it."""
        return formats_of(self.ext)

    @cached_property
    def records(self) -> bool:
        """A JSON Lines or Parquet extension is listed: --text_column applies."""
        return any(f.records for f in self.formats.values())

    @cached_property
    def sliced(self) -> tuple[int, int] | None:
        """(K, N): this run builds slice K of N of a sliced build (--slice/--num_slices, or a Slurm array
        task's position); None: a plain run, which commits."""
        return slice_of(self.num_slices, self.slice)

    @property
    def on_ray(self) -> bool:
        """The tasks run on Ray: --executor ray, except in a slice (a Slurm array task runs its share here)."""
        return self.executor == "ray" and self.sliced is None

    @property
    def task_bytes(self) -> int:
        return max(1, int(self.task_size_mb * (1 << 20)))


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
