"""The cache a training run reads, checked before any model is built: one place that turns the
cache dir into datasets or into one error line with the command that rebuilds it.

Always checked: the tokenizer, ``--max_seq_length`` and every array's size;
by default also the text the manifests record (``--input_check``), the
validation text against the training text, and that a split has blocks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from common.check import (
    SplitCheck,
    check_split,
    input_dirs,
    refuse_overlap,
    refuse_shared_corpora,
    refuse_shared_shards,
)
from common.config import CacheArguments
from common.corpora import check_one_layout, corpus_dir, parse_named, read_corpora, unfinished
from common.errors import UserError
from common.format import MANIFEST_NAME
from common.manifest import Manifest
from common.mixture import weights
from common.rebuild import corpus_text, named_rebuild_command, rebuild_command
from common.tokenizer import LoadedTokenizer
from train.dataset import DATASET_TYPES, ConcatBlocks
from train.mixture import table
from train.order import Corpus


def text_dir(cfg: CacheArguments, split: str, manifest: Manifest) -> tuple[str, bool]:
    """The text dir(s) a split is compared with, and whether the user named them (else the manifest
    does): a held-out validation split reads the training dirs."""
    held_out = split == "validation" and manifest.parameters.validation_split
    given = cfg.train_dir if split == "train" or held_out else cfg.eval_dir
    return (given, True) if given else (manifest.input_dir, False)


def input_check_note(split_dir: Path, dirs: str) -> str | None:
    """Why the text of a split cannot be compared from here (a GPU node without the text mounted); None if it can."""
    missing = [str(d) for d in input_dirs(dirs) if not d.is_dir()]
    if not missing:
        return None
    return (f"note: {split_dir} was not compared with its text: {', '.join(missing)} (recorded in its manifest) "
            f"{'is' if len(missing) == 1 else 'are'} not reachable from here; give --train_dir/--eval_dir where the "
            "text is, or --input_check off")


def compared(cfg: CacheArguments, split: str, split_dir: Path, first: SplitCheck, by_stat: bool) -> SplitCheck:
    """``first`` with the split's text compared, or unchanged after a note where the text is out of reach:
    a dir missing, or present but holding none of the shards (an unmounted file system's mount point)."""
    dirs, given = text_dir(cfg, split, first.manifest)
    note = None if given else input_check_note(split_dir, dirs)
    if note is None:
        c = check_split(split_dir, input_dir=dirs, sizes=False, manifest=first.manifest, by_stat=by_stat)
        if given or c.unchanged or c.changed or c.added or not c.removed:
            return c
        note = (f"note: {split_dir} was not compared with its text: {dirs} holds none of its "
                f"{len(c.removed):,} shards (a file system not mounted here?); give --train_dir/--eval_dir where "
                "the text is, or --input_check off")
    print(note, file=sys.stderr)
    return first


def split_checks(cfg: CacheArguments, loaded: LoadedTokenizer, input_check: str) -> dict[str, SplitCheck]:
    """Each split's check, from one read of its manifest: the tokenizer, ``--max_seq_length`` and every
    array's size; unless ``input_check`` is off, also the text: the dirs given, else those the manifest
    records when they are reachable from here (``stat``: files whose size and mtime are those recorded are
    not read). A validation split without a manifest is simply absent. Refuses at once (UserError)
    validation text that is training text."""
    if cfg.train_dir and cfg.eval_dir:
        refuse_overlap(cfg.train_dir, cfg.eval_dir, cfg.ext, cfg.recursive)
    checks = {}
    for split in ("train", "validation"):
        split_dir = Path(cfg.datasets_cache_dir) / split
        if split == "validation" and not (split_dir / MANIFEST_NAME).exists():
            if split_dir.is_dir() and any(split_dir.iterdir()):
                print(f"note: {split_dir} has no manifest (its build never finished, or a later one retired it): no "
                      "evaluation; rerun preprocessing to build it", file=sys.stderr)
            continue
        first = check_split(split_dir, tokenizer=loaded.identity, max_seq_length=cfg.max_seq_length)
        if split == "train" and first.manifest is not None and cfg.eval_dir and not cfg.train_dir:
            p = first.manifest.parameters  # the eval dir against the text the cache trains on
            refuse_overlap(first.manifest.input_dir, cfg.eval_dir, p.ext, p.recursive)
        if first.manifest is not None and not first.damaged and input_check in ("stat", "hash"):
            # also beside a tokenizer or length mismatch: one error then names all a rebuild must redo
            text = compared(cfg, split, split_dir, first, by_stat=input_check == "stat")
            first = replace(text, tokenizer=first.tokenizer, max_seq_length=first.max_seq_length)
        checks[split] = first
    if input_check == "off":  # ("skip": run_mlm.py, which has just brought the cache up to date)
        print("note: --input_check off: the cache was not compared with its text", file=sys.stderr)
    return checks


def checked_datasets(cfg: CacheArguments, loaded: LoadedTokenizer, input_check: str) -> dict[str, Any]:
    """Each split's dataset of a one-corpus cache (``split_checks``); UserError with what is wrong and
    the command that rebuilds the cache (worked out only then: it reads the manifests again)."""
    checks = split_checks(cfg, loaded, input_check)
    bad = [c for c in checks.values() if not c.usable]
    if bad:
        raise UserError(unusable_words(list(checks.values()), cfg, loaded, lambda: rebuild_command(cfg)))
    if "validation" in checks:
        warn_shared_text(checks["train"].manifest, checks["validation"].manifest)
    return datasets_of(cfg, checks)


def datasets_of(cfg: CacheArguments, checks: dict[str, SplitCheck]) -> dict[str, Any]:
    return {split: DATASET_TYPES[cfg.datasets_type](c.split_dir, cfg.max_seq_length, c.manifest)
            for split, c in checks.items()}


def _finding(c: SplitCheck) -> str:
    """What makes one split unusable, short: for the list of every affected split."""
    if c.unreadable:
        return c.unreadable
    out = ["built with another tokenizer"] if c.tokenizer else []
    if c.changed or c.added or c.removed:
        out.append(f"stale against {c.input_dir}: {c.changes(limit=3)}")
    if c.max_seq_length is not None:
        out.append(f"packed for --max_seq_length {c.manifest.parameters.max_seq_length}")
    if c.damaged:
        out.append(f"{len(c.damaged)} damaged (first: {c.damaged[0]})")
    return "; ".join(out)


def _text_moved_only(c: SplitCheck) -> bool:
    return bool(c.changed or c.added or c.removed) and not (c.tokenizer or c.unreadable or c.damaged
                                                            or c.max_seq_length is not None)


def _stale_words(c: SplitCheck) -> str:
    more = any(len(getattr(c, k)) > 10 for k in ("changed", "added", "removed"))
    listed = f" (mlm-inspect status {c.split_dir} -v lists every shard)" if more else ""
    return f"{c.split_dir} is stale against {c.input_dir}: {c.changes()}{listed}"


def unusable_words(checks: list[SplitCheck], cfg: CacheArguments, loaded: LoadedTokenizer,
                   command: Callable[[], str], corpora: str | None = None) -> str:
    """One message for every unusable split of a cache: what is wrong (``corpora``: the words that head the
    list of a named cache's affected corpora, each split's findings after it), the other way to go on
    where there is one (train at the length, or with the tokenizer, the cache was built for), and one
    command that brings the whole cache up to date for this run."""
    bad = [c for c in checks if not c.usable]
    fix = "to bring the whole cache up to date" if corpora else "to rebuild the cache"
    if corpora:
        head = f"{corpora}: " + "; ".join(f"{c.split_dir} {_finding(c)}" for c in bad)
    elif all(_text_moved_only(c) for c in bad):  # the common case, the text moved on: its shards
        head, fix = "; ".join(_stale_words(c) for c in bad), "rebuild it"
    else:
        head = "; ".join(p for c in bad for p in c.problems())
    ways = []
    # the other ways work only where nothing else is wrong: every split at one other length, or tokenizer
    others = [c for c in bad if c.unreadable or c.damaged or c.changed or c.added or c.removed]
    built = {c.manifest.parameters.max_seq_length for c in checks if c.manifest is not None}
    if not others and len(built) == 1 and all(c.max_seq_length is not None for c in checks):
        ways.append(f"to train on the cache as it was packed, pass --max_seq_length {next(iter(built))}")
    sources = sorted({c.manifest.tokenizer.name_or_path for c in bad if c.tokenizer})
    if sources and not others and len(sources) == 1 and all(c.tokenizer for c in checks):
        ways.append(f"the cache was built with the tokenizer {', '.join(sources)}, this run loads "
                    f"{loaded.identity.name_or_path}: to train with the cache's, pass --tokenizer_name_or_path "
                    f"{sources[0]}")
    return "; ".join([head, *ways, f"{'or, ' if ways else ''}{fix} (from any directory): {command()}"])


def warn_shared_text(train: Manifest, validation: Manifest) -> None:
    """Warn when validation shards are byte-identical to training shards: the model would be evaluated on
    text it trains on (a cache built before --eval_dir and --train_dir were checked for overlap)."""
    if validation.parameters.validation_split:
        return  # a held-out split lists the training files, each holding only its held-out documents
    seen = {s.digest for s in train.shards if s.lines}
    shared = [s.path for s in validation.shards if s.lines and s.digest in seen]
    if shared:
        print(f"warning: {len(shared)} of the {len(validation.shards)} validation shards are byte-identical to "
              f"training shards (first: {shared[0]}): evaluation runs on text the model trains on; rebuild "
              "the cache with an --eval_dir of other text, or --validation_split_percentage", file=sys.stderr)


def refuse_empty(cfg: CacheArguments, split: str, dataset: Any) -> None:
    """UserError, on one line, when a split has no examples (the Trainer would fail deep in its sampler)."""
    if len(dataset) > 0:
        return
    manifest = dataset.reader.manifest
    t = manifest.totals()
    instead = "" if split == "train" else "train without --eval_strategy/--do_eval, or "
    raise UserError(
        f"{Path(cfg.datasets_cache_dir) / split} holds no blocks: its text had no tokens ({manifest.input_dir}: "
        f"{t['shards']} files, {t['bytes']} bytes, {t['lines']} lines with tokens, {t['lines_without_tokens']} that "
        f"encode to none, blank lines dropped); {instead}add text there and rebuild the cache: {rebuild_command(cfg)}"
    )


@dataclass
class RunData:
    """What a run reads, checked: the training blocks (one corpus, or the named corpora one after the other)
    with their corpora and weights for the order (train/order.py), the evaluation set (one, or one a corpus:
    ``eval_<name>_loss``), the manifests (``train``, ``validation``, or ``<name>/<split>``) and each cache
    dir with the manifests of its files (the leases a job holds there, common/leases.py)."""

    train: Any
    corpora: list[Corpus] | None
    weights: list[float]
    evaluation: Any
    manifests: dict[str, Manifest]
    homes: list[tuple[Path, dict[str, Manifest]]]
    mixture: dict[str, float] = field(default_factory=dict)


def run_data(cfg: CacheArguments, loaded: LoadedTokenizer, input_check: str, mixture: str | None,
             alpha: float | None, targs: Any) -> RunData:
    """The datasets of the cache: its one corpus, or its named corpora (common/corpora.py) and their weights."""
    cache = Path(cfg.datasets_cache_dir)
    names = read_corpora(cache)
    if names is None:
        words = unfinished(cache)
        if words:  # a named cache whose first build was cut short
            raise UserError(words)
        named = {flag: parse_named(getattr(cfg, flag), f"--{flag}") for flag in ("train_dir", "eval_dir")}
        if named["train_dir"] is not None:
            if (cache / "train" / MANIFEST_NAME).exists():
                raise UserError(f"--train_dir {cfg.train_dir}: {cache} holds one unnamed corpus, no named ones; give "
                                "--train_dir as a dir, or preprocess the named corpora into another "
                                "--datasets_cache_dir")
            refuse_shared_corpora(named["train_dir"], named["eval_dir"] or {}, cfg.ext, cfg.recursive)
            command = named_rebuild_command(cfg, list(named["train_dir"]), {k: v for k, v in named.items() if v})
            raise UserError(f"--train_dir {cfg.train_dir}: {cache} holds no named corpora yet (no corpora.json); "
                            f"build them first (from any directory): {command}")
        if mixture or alpha is not None:
            raise UserError(f"--mixture{'_alpha' if alpha is not None else ''}: {cache} holds one unnamed corpus; "
                            "weights need named corpora (preprocess with --train_dir NAME=DIR entries)")
        return _one_corpus(cfg, loaded, input_check, targs)
    check_one_layout(cache, named=True)
    given = {flag: parse_named(getattr(cfg, flag), f"--{flag}") for flag in ("train_dir", "eval_dir")}
    for flag in ("train_dir", "eval_dir"):
        if getattr(cfg, flag) and given[flag] is None:
            raise UserError(f"--{flag} {getattr(cfg, flag)}: {cache} holds named corpora ({', '.join(names)}); "
                            f"give --{flag} as NAME=DIR entries (where each corpus's text is), or not at all")
    if given["train_dir"] or given["eval_dir"]:  # the text this run names, against each other as preprocess checks it
        refuse_shared_corpora(corpus_text(cache, names, given["train_dir"]), given["eval_dir"] or {}, cfg.ext,
                              cfg.recursive)
    subs = {name: replace(cfg, datasets_cache_dir=str(corpus_dir(cache, name)),
                          train_dir=(given["train_dir"] or {}).get(name), eval_dir=(given["eval_dir"] or {}).get(name))
            for name in names}
    checks = {name: split_checks(sub, loaded, input_check) for name, sub in subs.items()}
    bad = [c for name in names for c in checks[name].values() if not c.usable]
    if bad:
        affected = sorted({c.split_dir.parent.name for c in bad})
        raise UserError(unusable_words(
            [c for name in names for c in checks[name].values()], cfg, loaded, lambda: named_rebuild_command(cfg, names, {k: v for k, v in given.items() if v}),
            f"{cache}: {len(affected)} of its {len(names)} corpora cannot be trained on as they are "
            f"({', '.join(affected)})"))
    refuse_shared_shards(cache, {name: {split: c.manifest for split, c in checks[name].items()} for name in names})
    for c in checks.values():
        if "validation" in c:
            warn_shared_text(c["train"].manifest, c["validation"].manifest)
    parts = {name: datasets_of(subs[name], checks[name]) for name in names}
    blocks = {n: len(p["train"]) for n, p in parts.items()}
    share = weights(names, blocks, mixture, alpha)
    used = [n for n in names if share[n] > 0]
    if not used:
        raise UserError(f"{cache}: its corpora ({', '.join(names)}) hold no blocks; add text and rebuild them")
    offsets = np.concatenate([[0], np.cumsum([blocks[n] for n in used])]).tolist()
    corpora = [Corpus(n, parts[n]["train"].lengths(), int(offsets[k])) for k, n in enumerate(used)]
    evaluation = {n: p["validation"] for n, p in parts.items() if p.get("validation") is not None
                  and len(p["validation"]) > 0}
    if targs.eval_strategy != "no" and not evaluation:
        raise UserError(f"--eval_strategy/--do_eval but none of the corpora of {cache} has a validation split with "
                        "blocks; preprocess with --eval_dir NAME=DIR or --validation_split_percentage")
    manifests = {f"{n}/{split}": ds.reader.manifest for n, p in parts.items() for split, ds in p.items()}
    homes = [(corpus_dir(cache, n), {split: ds.reader.manifest for split, ds in p.items()}) for n, p in parts.items()]
    return RunData(ConcatBlocks([parts[n]["train"] for n in used]), corpora, [share[n] for n in used],
                   evaluation or None, manifests, homes, share)


def _one_corpus(cfg: CacheArguments, loaded: LoadedTokenizer, input_check: str, targs: Any) -> RunData:
    datasets = checked_datasets(cfg, loaded, input_check)
    train_set, eval_set = datasets["train"], datasets.get("validation")
    refuse_empty(cfg, "train", train_set)
    if eval_set is not None and len(eval_set) == 0:
        if targs.do_eval:  # --do_eval, or set by any --eval_strategy but "no"
            refuse_empty(cfg, "validation", eval_set)
        print(f"note: {cfg.datasets_cache_dir}/validation holds no blocks; no evaluation", file=sys.stderr)
        eval_set = None
    if targs.eval_strategy != "no" and eval_set is None:
        strategy = getattr(targs.eval_strategy, "value", targs.eval_strategy)
        raise UserError(f"--eval_strategy {strategy} but {cfg.datasets_cache_dir}/validation has no manifest; "
                        "preprocess with --eval_dir, or drop --eval_strategy")
    manifests = {name: ds.reader.manifest for name, ds in (("train", train_set), ("validation", eval_set)) if ds}
    return RunData(train_set, None, [1.0], eval_set, manifests, [(Path(cfg.datasets_cache_dir), manifests)])


def corpora_table(data: RunData, samples: int) -> str:
    """What the start of a run on named corpora shows: per corpus its tokens, blocks, weight and passes."""
    names = list(data.mixture)
    totals = {n: data.manifests[f"{n}/train"].totals() for n in names}
    text, warnings = table(names, {n: t["tokens"] for n, t in totals.items()},
                           {n: t["blocks"] for n, t in totals.items()}, data.mixture, samples)
    return "\n".join([f"note: the mixture of {len(names)} corpora over this run's {samples:,} samples:", text, *warnings])
