"""Named corpora (common/corpora.py): each preprocessed as a cache of its own, then the cache's list of them.

The one-corpus run (preprocess/run.py) is applied to each corpus in turn, so
everything it does (content keys, incremental rebuild, slices, Ray, the
lock) holds corpus by corpus. ``corpora.json`` is written last, once every
corpus is complete: until then training reads the list of the run before.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from common.check import input_dirs, refuse_shared_corpora, refuse_shared_shards
from common.corpora import (
    CORPORA_DIR,
    check_one_layout,
    corpus_dir,
    parse_named,
    read_corpora,
    write_corpora,
    write_pending,
)
from common.errors import UserError
from common.format import MANIFEST_NAME
from common.manifest import load_manifest
from common.rebuild import flag_number, named_command
from preprocess.cache_dir import check_layout
from preprocess.commit import SplitReport
from preprocess.config import PreprocessConfig
from preprocess.run import run


def finish_command(cfg: PreprocessConfig, named: dict[str, str], named_eval: dict[str, str]) -> str:
    """This run as a command that works from any directory (absolute paths): what finishes its build."""
    def absolute(dirs: str) -> str:
        return ",".join(os.path.abspath(d) for d in input_dirs(dirs))

    held_out = [] if cfg.validation_split_percentage is None else [
        "--validation_split_percentage", flag_number(cfg.validation_split_percentage),
        "--validation_split_seed", str(cfg.validation_split_seed)]
    params = {"ext": cfg.ext, "text_column": cfg.text_column, "recursive": cfg.recursive,
              "task_size_mb": cfg.task_size_mb}
    return named_command(cfg, [f"{n}={absolute(d)}" for n, d in named.items()],
                         [f"{n}={absolute(d)}" for n, d in named_eval.items()], held_out, params)


def run_all(cfg: PreprocessConfig, command: list[str]) -> list[tuple[str | None, SplitReport]]:
    """Preprocess the one unnamed corpus, or each named one; (corpus name or None, report) per split."""
    try:
        return _run_all(cfg, command)
    except OSError as e:  # the cache's own list of corpora (each corpus's run words its own errors)
        raise UserError(f"--datasets_cache_dir {cfg.datasets_cache_dir}: cannot write {e.filename or 'there'} "
                        f"({e.strerror or e}); the cache keeps its last complete state") from None


def _run_all(cfg: PreprocessConfig, command: list[str]) -> list[tuple[str | None, SplitReport]]:
    named = parse_named(cfg.train_dir, "--train_dir")
    named_eval = parse_named(cfg.eval_dir, "--eval_dir")
    cache = Path(cfg.datasets_cache_dir)
    if named is None:
        if named_eval is not None:
            raise UserError("--eval_dir names corpora (NAME=DIR) but --train_dir does not; name the training "
                            "corpora too (--train_dir NAME=DIR), or drop the names")
        check_one_layout(cache, named=False)
        return [(None, r) for r in run(cfg, command)]
    if cfg.eval_dir and named_eval is None:
        raise UserError(f"--eval_dir {cfg.eval_dir}: with named corpora, name the corpus it evaluates "
                        f"(--eval_dir {next(iter(named))}=DIR)")
    unknown = sorted(set(named_eval or {}) - set(named))
    if unknown:
        raise UserError(f"--eval_dir {unknown[0]}=...: no --train_dir corpus is named {unknown[0]!r} "
                        f"(the corpora: {', '.join(named)})")
    check_one_layout(cache, named=True)
    check_layout(cache, [("--train_dir", d) for d in named.values()] +
                 [("--eval_dir", d) for d in (named_eval or {}).values()])
    refuse_shared_corpora(named, named_eval or {}, cfg.ext, cfg.recursive)
    try:
        listed = read_corpora(cache)
    except UserError:  # a damaged list: this run writes it anew
        listed = None
    if listed is None:  # a first build: until its corpora.json, the record of what it builds
        write_pending(cache, list(named), finish_command(cfg, named, named_eval or {}))
    reports = []
    for name, dirs in named.items():
        sub = replace(cfg, train_dir=dirs, eval_dir=(named_eval or {}).get(name), datasets_cache_dir=str(corpus_dir(cache, name)))
        reports += [(name, r) for r in run(sub, command)]
    if cfg.sliced is None:
        refuse_shared_shards(cache, {name: {split: load_manifest(corpus_dir(cache, name) / split)
                                            for split in ("train", "validation")
                                            if (corpus_dir(cache, name) / split / MANIFEST_NAME).exists()}
                                     for name in named})  # copies, not links: only their digests show it
        write_corpora(cache, list(named))
        left = sorted(p.name for p in (cache / CORPORA_DIR).iterdir() if p.is_dir() and p.name not in named)
        if left:
            print(f"note: {', '.join(left)} no longer named: not trained on; "
                  f"{'its part stays' if len(left) == 1 else 'their parts stay'} in {cache / CORPORA_DIR} "
                  "(delete once no job reads it)", file=sys.stderr)
    return reports
