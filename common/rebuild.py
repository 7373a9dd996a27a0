"""The command that rebuilds a cache for a run, complete, to be pasted from any directory.

Every error that says "rebuild the cache" prints this. It is built from what
the cache's manifests record (the text dirs, formats, the held-out split,
task size) and from what the run asks for (its tokenizer, --max_seq_length),
with absolute paths, so pasting it anywhere rebuilds exactly the cache the
run needs, incrementally. The validation split is rebuilt from where it came
from (its --eval_dir, or the held-out share of the training dirs), never from
the training dirs themselves.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from common.check import input_dirs
from common.config import CacheArguments
from common.manifest import Manifest

PLACEHOLDER = "<dir of your training text>"


def _absolute(dirs: str) -> str:
    """``a,b`` with each dir made absolute (a dir whose own name holds a comma taken whole)."""
    return ",".join(os.path.abspath(d) for d in input_dirs(dirs))


def preprocess_program() -> list[str]:
    """How to call mlm-preprocess from anywhere: its name where the shell finds this installation's,
    else its absolute path (a venv that is not activated), else this Python with ``-m preprocess``."""
    here = Path(sys.executable).parent / "mlm-preprocess"
    found = shutil.which("mlm-preprocess")
    if found and here.is_file() and Path(found).resolve() == here.resolve():
        return ["mlm-preprocess"]
    if here.is_file():
        return [str(here)]
    return [sys.executable, "-m", "preprocess"]


def rebuild_command(cfg: CacheArguments, train: Manifest | None, validation: Manifest | None) -> str:
    """The ``mlm-preprocess`` command that rebuilds ``cfg.datasets_cache_dir`` for this run.

    The text dirs: the run's --train_dir/--eval_dir when given, else those
    the manifests record; the reading settings (--ext, --text_column,
    --recursive, --task_size_mb) from the manifest, as it was built; the
    tokenizer and the block size from the run. Without a manifest or a
    --train_dir the training dir is a placeholder the message names.
    """
    params = (train or validation).parameters if (train or validation) else None
    train_dir = cfg.train_dir or (train.input_dir if train else None)
    if train_dir is None and validation is not None and validation.parameters.validation_split:
        train_dir = validation.input_dir  # a held-out split reads the training dir
    args = [*preprocess_program(), "--tokenizer_name_or_path", os.path.abspath(cfg.tokenizer_name_or_path),
            "--tokenizer_type", cfg.tokenizer_type,
            "--train_dir", _absolute(train_dir) if train_dir else PLACEHOLDER]
    held_out = validation.parameters.validation_split if validation else None
    if cfg.eval_dir:
        args += ["--eval_dir", _absolute(cfg.eval_dir)]
    elif held_out:
        args += ["--validation_split_percentage", f"{held_out['percentage']:g}",
                 "--validation_split_seed", str(held_out["seed"])]
    elif validation is not None:
        args += ["--eval_dir", _absolute(validation.input_dir)]
    args += ["--ext", params.ext if params else cfg.ext]
    if params is not None and params.text_column:
        args += ["--text_column", params.text_column]
    if params.recursive if params else cfg.recursive:
        args.append("--recursive")
    if params is not None and params.task_size_mb is not None:
        args += ["--task_size_mb", f"{params.task_size_mb:g}"]
    if cfg.add_space_token:
        args.append("--add_space_token")
    if cfg.datasets_type != CacheArguments.datasets_type:
        args += ["--datasets_type", cfg.datasets_type]
    args += ["--datasets_cache_dir", os.path.abspath(cfg.datasets_cache_dir), "--max_seq_length",
             str(cfg.max_seq_length)]
    return shlex.join(args)
