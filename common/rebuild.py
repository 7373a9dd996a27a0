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
from common.corpora import corpus_dir
from common.format import MANIFEST_NAME

PLACEHOLDER = "<dir of your training text>"
EVAL_PLACEHOLDER = "<dir of your validation text>"


def _absolute(dirs: str) -> str:
    """``a,b`` with each dir made absolute (a dir whose own name holds a comma taken whole)."""
    return ",".join(os.path.abspath(d) for d in input_dirs(dirs))


def flag_number(x: Any) -> str:
    """A recorded number as a flag's value that parses back to exactly it (``{:g}`` alone rounds 3.14159265)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        short = f"{x:g}"
        return short if float(short) == x else repr(x)
    return str(x)


def script_command(script: str, module: str | None) -> list[str]:
    """How to call this installation's console ``script`` from anywhere: its name where the shell finds
    this installation's, else its absolute path (a venv that is not activated), else this Python with
    ``-m module`` (the bare name when there is no module)."""
    here = Path(sys.executable).parent / script
    found = shutil.which(script)
    if found and here.is_file() and Path(found).resolve() == here.resolve():
        return [script]
    if here.is_file():
        return [str(here)]
    return [sys.executable, "-m", module] if module else [script]


def preprocess_program() -> list[str]:
    """How to call mlm-preprocess from anywhere (``script_command``)."""
    return script_command("mlm-preprocess", "preprocess")


def recorded(split_dir: Path) -> dict[str, Any] | None:
    """What a split's manifest records about its inputs (``input_dir``, ``parameters``), read as plain JSON:
    also from a manifest too damaged or too old to load, so its fix still names the text. None if unreadable."""
    try:
        d = json.loads((Path(split_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(d, dict) and isinstance(d.get("input_dir"), str) and isinstance(d.get("parameters", {}), dict)
    return d if ok else None


def corpus_text(cache: str | Path, names: list[str], given: dict[str, str] | None) -> dict[str, str]:
    """Each named corpus's training dirs: those this run gives (``given``, NAME=DIR), else those its manifest
    records; a corpus with neither is left out."""
    text = {n: (given or {}).get(n) or (recorded(corpus_dir(cache, n) / "train") or {}).get("input_dir") for n in names}
    return {n: d for n, d in text.items() if d}


def _sources(split_home: Path, train_dir: str | None, eval_dir: str | None) -> tuple[str | None, list[str], dict]:
    """Where one cache dir's text comes from: (its training dirs, absolute, or None where nothing records
    them; the flags of its validation split; the reading parameters its manifests record). The dirs given
    to this run win over those recorded; the validation split comes from where it came from."""
    train, validation = recorded(split_home / "train"), recorded(split_home / "validation")
    params = (train or validation or {}).get("parameters", {})
    held_out = (validation or {}).get("parameters", {}).get("validation_split")
    train_dir = train_dir or (train or {}).get("input_dir") or (validation["input_dir"] if held_out else None)
    if eval_dir:
        evals = ["--eval_dir", _absolute(eval_dir)]
    elif isinstance(held_out, dict):
        evals = ["--validation_split_percentage", flag_number(held_out.get("percentage")),
                 "--validation_split_seed", str(held_out.get("seed"))]
    elif validation is not None:
        evals = ["--eval_dir", _absolute(validation["input_dir"])]
    elif (split_home / "validation" / MANIFEST_NAME).exists():  # there, but unreadable: its text dir is unknown
        evals = ["--eval_dir", EVAL_PLACEHOLDER]
    else:
        evals = []
    return (_absolute(train_dir) if train_dir else None), evals, params


def _reading(params: dict[str, Any], cfg: CacheArguments) -> list[str]:
    """--ext, --text_column, --recursive, --task_size_mb as recorded (else as this run has them)."""
    args = ["--ext", str(params.get("ext") or cfg.ext)]
    if params.get("text_column"):
        args += ["--text_column", str(params["text_column"])]
    if params.get("recursive", cfg.recursive):
        args.append("--recursive")
    if params.get("task_size_mb") is not None:
        args += ["--task_size_mb", flag_number(params["task_size_mb"])]
    return args


def _head(cfg: CacheArguments) -> list[str]:
    return [*preprocess_program(), "--tokenizer_name_or_path", os.path.abspath(cfg.tokenizer_name_or_path),
            "--tokenizer_type", cfg.tokenizer_type]


def _tail(cfg: CacheArguments) -> list[str]:
    args = ["--add_space_token"] if cfg.add_space_token else []
    if cfg.datasets_type != CacheArguments.datasets_type:
        args += ["--datasets_type", cfg.datasets_type]
    return args + ["--datasets_cache_dir", os.path.abspath(cfg.datasets_cache_dir),
                   "--max_seq_length", str(cfg.max_seq_length)]


def rebuild_command(cfg: CacheArguments) -> str:
    """The ``mlm-preprocess`` command that rebuilds ``cfg.datasets_cache_dir`` for this run.

    The text dirs: the run's --train_dir/--eval_dir when given, else those
    the manifests record; the reading settings (--ext, --text_column,
    --recursive, --task_size_mb) from the manifest, as it was built; the
    tokenizer and the block size from the run. Without a manifest or a
    --train_dir the training dir is a placeholder the message names.
    """
    train_dir, evals, params = _sources(Path(cfg.datasets_cache_dir), cfg.train_dir, cfg.eval_dir)
    return shlex.join([*_head(cfg), "--train_dir", train_dir or PLACEHOLDER, *evals, *_reading(params, cfg),
                       *_tail(cfg)])


def named_rebuild_command(cfg: CacheArguments, names: list[str], given: dict[str, dict[str, str]] | None = None
                          ) -> str:
    """The one ``mlm-preprocess`` command that brings every named corpus of the cache up to date for this
    run: ``--train_dir a=DIR,b=DIR`` (a corpus of several dirs: ``a=DIR,DIR``), each corpus's validation
    split from where it came from, the reading settings its manifests record. ``given``: the NAME=DIR
    dirs of this run's --train_dir/--eval_dir (``{"train_dir": {...}, "eval_dir": {...}}``)."""
    given = given or {}
    train, evals, held_out, params = [], [], [], {}
    for name in names:
        home = corpus_dir(cfg.datasets_cache_dir, name)
        t, e, p = _sources(home, given.get("train_dir", {}).get(name), given.get("eval_dir", {}).get(name))
        train.append(f"{name}={t or f'<dir of the {name} text>'}")
        if e[:1] == ["--eval_dir"]:
            evals.append(f"{name}={e[1]}")
        elif e:
            held_out = e
        for k, v in p.items():
            params.setdefault(k, v)
        if p.get("ext"):  # one command built them all with one --ext; else every corpus's (a file by its longest)
            params["ext"] = ",".join(dict.fromkeys([*str(params["ext"]).split(","), *str(p["ext"]).split(",")]))
    return named_command(cfg, train, evals, held_out, params)


def named_command(cfg: CacheArguments, train: list[str], evals: list[str], held_out: list[str],
                  params: dict[str, Any]) -> str:
    """``mlm-preprocess`` over named corpora: ``train``/``evals`` NAME=DIR entries, ``held_out`` the
    --validation_split_* flags, ``params`` the reading settings; tokenizer, cache and block size from ``cfg``."""
    args = [*_head(cfg), "--train_dir", ",".join(train)]
    if evals:
        args += ["--eval_dir", ",".join(evals)]
    elif held_out:
        args += held_out
    return shlex.join(args + _reading(params, cfg) + _tail(cfg))
