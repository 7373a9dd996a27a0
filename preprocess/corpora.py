"""Named corpora (common/corpora.py): each preprocessed as a cache of its own, then the cache's list of them.

The one-corpus run (preprocess/run.py) is applied to each corpus in turn, so
everything it does (content keys, incremental rebuild, slices, Ray, the
lock) holds corpus by corpus. ``corpora.json`` is written last, once every
corpus is complete: until then training reads the list of the run before.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from common.corpora import CORPORA_DIR, check_one_layout, corpus_dir, parse_named, write_corpora
from common.errors import UserError
from preprocess.cache_dir import check_layout
from preprocess.commit import SplitReport
from preprocess.config import PreprocessConfig
from preprocess.run import run


def run_all(cfg: PreprocessConfig, command: list[str]) -> list[tuple[str | None, SplitReport]]:
    """Preprocess the one unnamed corpus, or each named one; (corpus name or None, report) per split."""
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
    reports = []
    for name, dirs in named.items():
        sub = replace(cfg, train_dir=dirs, eval_dir=(named_eval or {}).get(name), datasets_cache_dir=str(corpus_dir(cache, name)))
        reports += [(name, r) for r in run(sub, command)]
    if cfg.sliced is None:
        write_corpora(cache, list(named))
        left = sorted(p.name for p in (cache / CORPORA_DIR).iterdir() if p.is_dir() and p.name not in named)
        if left:
            print(f"note: {', '.join(left)} no longer named: not trained on; "
                  f"{'its part stays' if len(left) == 1 else 'their parts stay'} in {cache / CORPORA_DIR} "
                  "(delete once no job reads it)", file=sys.stderr)
    return reports
