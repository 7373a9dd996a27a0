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

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from common.check import input_dirs
from common.config import CacheArguments
from common.format import MANIFEST_NAME

PLACEHOLDER = "<dir of your training text>"
EVAL_PLACEHOLDER = "<dir of your validation text>"


def _absolute(dirs: str) -> str:
    """``a,b`` with each dir made absolute (a dir whose own name holds a comma taken whole)."""
    return ",".join(os.path.abspath(d) for d in input_dirs(dirs))


def _number(x: Any) -> str:
    """A recorded number as a flag's value that parses back to exactly it (``{:g}`` alone rounds 3.14159265)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        short = f"{x:g}"
        return short if float(short) == x else repr(x)
    return str(x)


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


def recorded(split_dir: Path) -> dict[str, Any] | None:
    """What a split's manifest records about its inputs (``input_dir``, ``parameters``), read as plain JSON:
    also from a manifest too damaged or too old to load, so its fix still names the text. None if unreadable."""
    try:
        d = json.loads((Path(split_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(d, dict) and isinstance(d.get("input_dir"), str) and isinstance(d.get("parameters", {}), dict)
    return d if ok else None


def rebuild_command(cfg: CacheArguments) -> str:
    """The ``mlm-preprocess`` command that rebuilds ``cfg.datasets_cache_dir`` for this run.

    The text dirs: the run's --train_dir/--eval_dir when given, else those
    the manifests record; the reading settings (--ext, --text_column,
    --recursive, --task_size_mb) from the manifest, as it was built; the
    tokenizer and the block size from the run. Without a manifest or a
    --train_dir the training dir is a placeholder the message names.
    """
    cache = Path(cfg.datasets_cache_dir)
    train, validation = recorded(cache / "train"), recorded(cache / "validation")
    params = (train or validation or {}).get("parameters", {})
    held_out = (validation or {}).get("parameters", {}).get("validation_split")
    train_dir = cfg.train_dir or (train or {}).get("input_dir") or (validation["input_dir"] if held_out else None)
    args = [*preprocess_program(), "--tokenizer_name_or_path", os.path.abspath(cfg.tokenizer_name_or_path),
            "--tokenizer_type", cfg.tokenizer_type,
            "--train_dir", _absolute(train_dir) if train_dir else PLACEHOLDER]
    if cfg.eval_dir:
        args += ["--eval_dir", _absolute(cfg.eval_dir)]
    elif isinstance(held_out, dict):
        args += ["--validation_split_percentage", _number(held_out.get("percentage")),
                 "--validation_split_seed", str(held_out.get("seed"))]
    elif validation is not None:
        args += ["--eval_dir", _absolute(validation["input_dir"])]
    elif (cache / "validation" / MANIFEST_NAME).exists():  # there, but unreadable: its text dir is unknown
        args += ["--eval_dir", EVAL_PLACEHOLDER]
    args += ["--ext", str(params.get("ext") or cfg.ext)]
    if params.get("text_column"):
        args += ["--text_column", str(params["text_column"])]
    if params.get("recursive", cfg.recursive):
        args.append("--recursive")
    if params.get("task_size_mb") is not None:
        args += ["--task_size_mb", _number(params["task_size_mb"])]
    if cfg.add_space_token:
        args.append("--add_space_token")
    if cfg.datasets_type != CacheArguments.datasets_type:
        args += ["--datasets_type", cfg.datasets_type]
    args += ["--datasets_cache_dir", os.path.abspath(cache), "--max_seq_length", str(cfg.max_seq_length)]
    return shlex.join(args)
