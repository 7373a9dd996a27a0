"""The preprocess run, top to bottom: lock the cache -> plan -> run the piece jobs -> commit each split
(or, as one slice of a sliced build, leave a marker). Only what changed is redone: the plan
(plan.py) finds every part the cache already holds by its content key."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from common.check import refuse_overlap
from common.errors import UserError
from common.format import MANIFEST_NAME
from common.manifest import Manifest, TokenizerIdentity, TokenizerSource
from common.tokenizer import LoadedTokenizer, TokenizerError, tokenizer_source
from common.typed_json import gc_paused, to_json
from preprocess.cache_dir import cache_lock, check_layout, clear_markers, read_markers, write_marker
from preprocess.commit import (
    SplitReport,
    checked_manifest,
    clean_up,
    commit_split,
    marker_tokenizer,
    old_manifest,
    read_only_message,
    read_only_reason,
    retire_split,
    slice_note,
)
from preprocess.config import PreprocessConfig
from preprocess.encoder import load_encoder
from preprocess.executors import MapPieces, executor
from preprocess.piece import Examples, pack_piece
from preprocess.plan import FLAGS, SplitPlan, list_splits, plan_splits
from preprocess.readers import sample_lines
from preprocess.workers import WorkerDied

SAMPLE_BYTES = 64 << 10


def run(cfg: PreprocessConfig, command: list[str]) -> list[SplitReport]:
    """Bring ``<cache>/<split>`` up to date with the inputs; one report per split.

    A file that vanishes or cannot be read mid-run, or a full disk, is the
    user's to fix: a UserError naming the file, never a traceback.
    """
    try:
        return _run(cfg, command)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise UserError(f"{where}{e.strerror or e}; the cache keeps its last complete state") from None
    except WorkerDied as e:
        raise UserError(f"{e}; the cache keeps its last complete state: rerun to resume, with fewer "
                        "--num_workers or a smaller --task_size_mb if memory ran out") from None


def _run(cfg: PreprocessConfig, command: list[str]) -> list[SplitReport]:
    # Must precede any use of a fast tokenizer in this process: a fork after
    # Rust threads ran hangs the workers forever.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    cache = Path(cfg.datasets_cache_dir)
    check_layout(cache, [(FLAGS[split], d) for split, d in cfg.splits()])
    if cfg.eval_dir:
        refuse_overlap(cfg.train_dir, cfg.eval_dir, cfg.ext, cfg.recursive)
    listings = list_splits(cfg)
    try:
        source = tokenizer_source(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
    except TokenizerError as e:
        raise UserError(str(e)) from None
    sliced = cfg.sliced
    with cache_lock(cache, shared=sliced is not None) as writable:
        if sliced is not None and not writable:
            raise UserError(f"--datasets_cache_dir {cache} cannot be written (read-only or no permission): "
                            "a slice writes pieces there")
        splits = [split for split, _ in cfg.splits()]
        markers = [read_markers(cache / split) if sliced is None else [] for split in splits]
        built = [frozenset(k for m in found for k in m["pieces"] if isinstance(k, str)) for found in markers]
        start = time.perf_counter()
        with gc_paused():  # a plan of 36,000 pieces is 500,000 objects with no cycle: no collector passes
            olds = [old_manifest(cache / split) if sliced is None else None for split in splits]
            plans = plan_splits(cfg, listings, cache, source.digest, sliced, built, olds)
        return _build_and_commit(cfg, command, cache, plans, olds, markers, source, writable, start)


def _build_and_commit(cfg: PreprocessConfig, command: list[str], cache: Path, plans: list[SplitPlan],
                      olds: list[Manifest | None], markers: list[list[dict]], source: TokenizerSource,
                      writable: bool, start: float) -> list[SplitReport]:
    """Run the piece jobs of every split, then commit each (or write a slice's markers)."""
    sliced = cfg.sliced
    for plan, found in zip(plans, markers):
        slice_note(plan, found)
    loaded, encoder, tokenizer = _tokenizer(cfg, plans, olds, markers, source, writable, cache)
    reports, read_only_reasons = [], []
    work = loaded is not None and any(p.to_tokenize for p in plans)
    with executor(cfg, loaded, encoder, source, [p.out_dir for p in plans]) if work else nullcontext() as map_pieces:
        for plan, old in zip(plans, olds):
            t0 = time.perf_counter() if plan is not plans[0] else start
            n_tok, n_pack = plan.shards_of(plan.to_tokenize), plan.shards_of(plan.to_pack)
            examples = build_pieces(plan, map_pieces, " on Ray" if cfg.on_ray else "")
            if sliced is not None:
                write_marker(plan.out_dir, *sliced, [p.key for p in plan.pieces], to_json(tokenizer))
                reports.append(SplitReport(plan.split, plan.shards_of(plan.pieces), n_tok, n_pack, False,
                                           seconds=time.perf_counter() - t0, sliced=sliced,
                                           pieces=len(plan.pieces)))
                continue
            with gc_paused():  # as while planning: the manifest's records hold no cycle
                manifest = checked_manifest(cfg, plan, tokenizer, examples, command, tokenized=bool(n_tok))
                force = bool(cfg.overwrite_cache or n_tok or n_pack)
                if not writable:
                    reason = "--overwrite_cache asks to rebuild it" if cfg.overwrite_cache else None
                    read_only_reasons.append(reason or read_only_reason(plan, old, manifest))
                    written = False
                else:
                    written = commit_split(plan, manifest, old, force=force)
                    clean_up(cache, plan, manifest)
                    clear_markers(plan.out_dir)
            reports.append(SplitReport(plan.split, len(plan.names), n_tok, n_pack, not written,
                                       manifest.totals(), time.perf_counter() - t0))
    if any(read_only_reasons):
        raise UserError(read_only_message(cache, read_only_reasons))
    if sliced is None and writable and not cfg.eval_dir and cfg.validation_split_percentage is None \
            and (cache / "validation" / MANIFEST_NAME).exists():
        retire_split(cache, "validation")
    return reports


def _tokenizer(cfg: PreprocessConfig, plans: list[SplitPlan], olds: list[Manifest | None], markers: list[list[dict]],
               source: TokenizerSource, writable: bool, cache: Path
               ) -> tuple[LoadedTokenizer | None, str | None, TokenizerIdentity]:
    """The tokenizer, loaded with its encoder where there is work (always for a slice: its marker
    describes it), and its description for the manifest. A fresh cache whose manifests or markers
    describe a tokenizer of the same digest needs no load: same digest, same tokenizer."""
    described = [o.tokenizer for o in olds if o is not None and o.tokenizer.digest == source.digest]
    described += [t for t in (marker_tokenizer(m) for found in markers for m in found[:1])
                  if t is not None and t.digest == source.digest][: len(plans) - len(described)]
    needs_load = (cfg.sliced is not None or any(p.to_tokenize or p.to_pack for p in plans)
                  or len(described) < len(plans))
    if not needs_load:
        return None, None, replace(described[0], name_or_path=source.name_or_path)
    if not writable:
        raise UserError(read_only_message(cache, [read_only_reason(p, o, None) for p, o in zip(plans, olds)]))
    first = next(((p.paths[0], p.fmts[0]) for plan in plans for p in plan.pieces), None)
    path, fmt = first or (plans[0].paths[0], plans[0].fmts[0])
    sample = sample_lines(path, fmt, cfg.text_column, SAMPLE_BYTES)[:256]  # real text for the encoder check
    loaded, encoder = load_encoder(cfg, sample, source.digest)
    return loaded, encoder, replace(loaded.identity, encoder=encoder)


def build_pieces(plan: SplitPlan, map_pieces: MapPieces | None, where: str) -> Examples:
    """Run the split's piece jobs that need tokenizing, then pack the pieces reused without a block
    index for this --max_seq_length; examples of what the warnings name."""
    examples = Examples()
    todo = plan.to_tokenize
    if todo:
        assert map_pieces is not None, "an executor is started where there is work"
        bar = tqdm(total=sum(p.bytes for p in todo), unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"{plan.split}: tokenizing {plan.shards_of(todo)} shards{where}", dynamic_ncols=True)
        t0, n_tokens = time.perf_counter(), 0
        try:
            for i, done in map_pieces(todo, bar.update):
                todo[i].record, todo[i].blocks = done.record, done.blocks
                examples.add(done.examples.unk, done.examples.bad)
                n_tokens += done.record["tokens"]
                bar.set_postfix_str(f"{n_tokens / max(time.perf_counter() - t0, 1e-9):,.0f} tok/s", refresh=False)
        finally:
            bar.close()
    for job in plan.to_pack:
        assert job.record is not None, "packed after tokenizing"
        job.blocks = pack_piece(job.out_dir, job.record, job.block_key, job.max_seq_length)
    return examples
