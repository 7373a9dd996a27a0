"""The preprocess run: check inputs, lock the cache, plan from digests, do only what changed."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import leases
from common.check import input_dirs, refuse_overlap
from common.errors import UserError
from common.format import BLOCKS_DIR, PIECES_DIR, SPACE_TOKEN
from common.manifest import Manifest, Parameters, ShapeError, TokenizerIdentity, TokenizerSource, to_json, unk_share
from common.manifest import build as build_dataclass
from common.packing import PACKING
from common.tokenizer import (
    LoadedTokenizer,
    TokenizerError,
    load_tokenizer,
    preprocess_space_token,
    tokenizer_source,
)
from preprocess import build, slices
from preprocess.config import PreprocessConfig
from preprocess.encode import (
    CLEANING,
    PROBE_LINES,
    choose_encoder,
    encode_task,
    ids_problem,
    sample_lines,
    set_worker_state,
    worker_state,
)
from preprocess.formats import Format, formats_of
from preprocess.lock import cache_lock
from preprocess.sharding import Scan, list_shards, scan_shards
from preprocess.workers import WorkerDied, Workers

SAMPLE_BYTES = 64 << 10
UNK_WARN_SHARE = 0.05  # above it, the vocabulary misses the text: warn


def _scan_shards(split: str, shards: list[Path], fmts: list[Format], cfg: PreprocessConfig) -> list[Scan]:
    total = sum(p.stat().st_size for p in shards)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"{split}: hashing {len(shards)} shards",
              dynamic_ncols=True, disable=total < (256 << 20)) as bar:
        return scan_shards(shards, fmts, cfg.task_bytes, progress=bar.update, column=cfg.text_column)


def check_layout(cache: Path, inputs: list[tuple[str, str]]) -> None:
    """Refuse text and cache that overlap, and links inside the cache's own dirs.

    The cache deletes the pieces it no longer needs; text inside it (or a
    cache inside the text) is one mistyped flag away from deleting a corpus.
    """
    c = cache.resolve()
    for flag, d in [(flag, str(x)) for flag, value in inputs for x in input_dirs(value)]:
        t = Path(d).resolve()
        if t == c or c in t.parents:
            raise UserError(f"{flag} {d} is inside --datasets_cache_dir {cache}, whose files this tool manages; "
                            "keep the text outside the cache dir")
        if t in c.parents:
            raise UserError(f"--datasets_cache_dir {cache} is inside {flag} {d}; put the cache outside the text dir")
    for split in ("train", "validation"):
        for p in (cache / split, cache / split / PIECES_DIR, cache / split / BLOCKS_DIR):
            if p.is_symlink():
                raise UserError(f"{p} is a symlink; the cache writes and deletes only in its own dirs: "
                                f"remove the link (rm {p}) and rerun")


def _sample_lines(shard: Path, fmt: Format, cfg: PreprocessConfig) -> list[str]:
    """The first lines of a shard: real text for the encoder check."""
    return sample_lines(shard, fmt, cfg.text_column, SAMPLE_BYTES)[:256]


def _load(cfg: PreprocessConfig, sample: list[str], planned: str) -> tuple[LoadedTokenizer, str]:
    """Load the tokenizer and pick its encoder backend.

    ``planned`` is the tokenizer digest every cache key of this run was made
    from; the files are hashed again once the tokenizer is loaded, so tokens
    of a tokenizer edited meanwhile are never stored under the old one's keys.
    """
    try:
        loaded = load_tokenizer(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
        after = tokenizer_source(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
    except TokenizerError as e:
        raise UserError(str(e)) from None
    if not loaded.identity.digest == after.digest == planned:
        raise UserError(f"--tokenizer_name_or_path {cfg.tokenizer_name_or_path}: its files changed while this run "
                        "read them; nothing was tokenized. Rerun once nothing writes to them.")
    missing = [role for role in ("mask", "pad") if getattr(loaded.identity.special_ids, role) is None]
    if missing:  # found here, not after the GPU hours of setting up a training run
        raise UserError(f"--tokenizer_name_or_path {cfg.tokenizer_name_or_path}: the tokenizer has no "
                        f"{' and no '.join(missing)} token, which masked-LM training needs; add it (e.g. "
                        f"tok.add_special_tokens({{{', '.join(repr(r + '_token') + ': ' + repr('<' + r + '>') for r in missing)}}}) "
                        "then tok.save_pretrained(dir)) and pass that dir")
    if cfg.add_space_token and SPACE_TOKEN not in loaded.tokenizer.get_vocab():
        raise UserError(
            f"--add_space_token: the tokenizer at {cfg.tokenizer_name_or_path} has no {SPACE_TOKEN!r} token; "
            "add it to the vocabulary or drop the flag"
        )
    if preprocess_space_token(loaded.identity):
        sample = [s.replace(" ", SPACE_TOKEN) for s in sample]
    # the corpus's own lines: the probe text is Latin, so a Latin vocabulary would always pass on Thai text
    problem = ids_problem(loaded.tokenizer, [s for s in sample if s.strip()] or PROBE_LINES,
                          loaded.identity.special_ids.unk)
    if problem:  # else the run "succeeds" with a cache of no tokens, or of nothing but <unk>
        t = loaded.identity
        raise UserError(f"--tokenizer_name_or_path {cfg.tokenizer_name_or_path} (--tokenizer_type {t.type}, "
                        f"{t.class_name}, {t.vocab_size:,} ids) {problem}; a cache of it would hold nothing to "
                        "learn: pass the tokenizer made for this text")
    encoder, rejected = choose_encoder(loaded.tokenizer, sample)
    for r in rejected:
        print(f"note: encoder backend {r}; using a slower one that matches transformers", file=sys.stderr)
    return loaded, encoder


@contextmanager
def _task_map(cfg: PreprocessConfig, loaded: LoadedTokenizer, encoder: str,
              plans: list[build.SplitPlan]) -> Iterator[build.TaskMap]:
    """A function mapping tasks to results in order: a process pool, or in-process for one worker.

    Workers are forked after the parent set up the tokenizer, so each starts
    with it loaded (a reload costs about 1 s a process). Safe because
    TOKENIZERS_PARALLELISM is false before the parent first used it (see run()).
    """
    set_worker_state(loaded, encoder)
    try:
        if cfg.num_workers == 1:
            yield lambda tasks: map(encode_task, tasks)
            return
        workers = Workers(cfg.num_workers, encode_task)
        try:
            yield workers.imap
            workers.close()
        finally:
            workers.kill()  # an error or a signal: no worker outlives the run
    finally:
        for plan in plans:  # chunk files of tasks a stop left unread
            build.remove_spills(plan.out_dir)


@contextmanager
def _executor(cfg: PreprocessConfig, loaded: LoadedTokenizer, encoder: str, source: TokenizerSource,
              plans: list[build.SplitPlan]) -> Iterator[Callable[[build.SplitPlan], build.Examples]]:
    """A function that tokenizes (and, on Ray, packs) the pieces a plan needs: on --num_workers local
    processes, or on a Ray cluster (ray_executor.py)."""
    dtype = np.dtype(loaded.identity.dtype)
    if cfg.executor == "ray":
        from preprocess import ray_executor

        where = Path(cfg.tokenizer_name_or_path)
        spec = ray_executor.TokenizerSpec(str(where.resolve()) if where.exists() else cfg.tokenizer_name_or_path,
                                          cfg.tokenizer_type, cfg.tokenizer_settings,
                                          source.digest, encoder, worker_state(loaded, encoder))
        try:
            with ray_executor.session(cfg.ray_address, cfg.num_workers) as ray:
                yield lambda plan: ray_executor.tokenize_split(ray, plan, dtype, spec, cfg.max_seq_length, cfg.strict)
        finally:  # Ray is shut down: temp files of this host's workers it killed mid-write go too
            for plan in plans:
                build.remove_spills(plan.out_dir)
                build.remove_stale_temps(plan.out_dir)
        return
    with _task_map(cfg, loaded, encoder, plans) as task_map:
        yield lambda plan: build.tokenize_split(plan, dtype, task_map, cfg.strict)


def parameters(cfg: PreprocessConfig, split: str) -> Parameters:
    held_out = None
    if cfg.validation_split_percentage is not None:
        held_out = {"percentage": cfg.validation_split_percentage, "seed": cfg.validation_split_seed, "side": split}
    records = any(f.records for f in formats_of(cfg.ext).values())  # a JSON Lines or Parquet ext is listed
    return Parameters(cfg.ext, cfg.max_seq_length, cfg.datasets_type, cfg.add_space_token, CLEANING, PACKING,
                      cfg.recursive, cfg.text_column if records else None, held_out,
                      task_size_mb=cfg.task_size_mb)


def run(cfg: PreprocessConfig, command: list[str]) -> list[build.SplitReport]:
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


def _run(cfg: PreprocessConfig, command: list[str]) -> list[build.SplitReport]:
    # Must precede any use of a fast tokenizer in this process: a fork after
    # Rust threads ran hangs the workers forever.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    flags = {"train": "--train_dir", "validation": "--eval_dir"}
    cache = Path(cfg.datasets_cache_dir)
    check_layout(cache, [(flags[split], d) for split, d in cfg.splits()])
    if cfg.eval_dir:
        refuse_overlap(cfg.train_dir, cfg.eval_dir, cfg.ext, cfg.recursive)
    inputs, listings = [], {}
    for split, d in cfg.splits():
        if d not in listings:  # a held-out split reads the training dir: listed and checked once
            listings[d] = list_shards(d, cfg.ext, flags[split], cfg.recursive, cfg.text_column, has_recursive=True)
        listed = listings[d]
        where = ",".join(str(x.resolve()) for x in input_dirs(d))
        inputs.append((split, where, [name for name, *_ in listed], [p.resolve() for _, p, _ in listed],
                       [fmt for *_, fmt in listed]))
    try:
        source = tokenizer_source(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
    except TokenizerError as e:
        raise UserError(str(e)) from None
    sliced = slices.slice_of(cfg.num_slices, cfg.slice)
    with cache_lock(cache, shared=sliced is not None) as writable:
        if sliced is not None:
            if not writable:
                raise UserError(f"--datasets_cache_dir {cache} cannot be written (read-only or no permission): "
                                "a slice writes pieces there")
            return _run_slice(cfg, inputs, source, sliced, cache)
        start = time.perf_counter()
        plans, scanned = [], {}
        markers = [slices.read_markers(cache / split) for split, *_ in inputs]
        for (split, input_dir, names, shards, fmts), found in zip(inputs, markers):
            if input_dir not in scanned:  # hashed once for both sides of a held-out split
                scanned[input_dir] = _scan_shards(split, shards, fmts, cfg)
            built = frozenset(k for m in found for k in m["pieces"] if isinstance(k, str))
            plans.append(build.plan_split(split, input_dir, cache / split, names, shards, fmts, scanned[input_dir],
                                          source.digest, cfg.max_seq_length, cfg.overwrite_cache,
                                          cfg.verify_outputs, piece_bytes=cfg.task_bytes, column=cfg.text_column,
                                          select=cfg.select(split), fresh=built))
        olds = [build.old_manifest(p.out_dir) for p in plans]
        for plan, found in zip(plans, markers):
            _slice_note(plan, found)
        described = [o.tokenizer for o in olds if o is not None and o.tokenizer.digest == source.digest]
        described += [t for t in (_marker_tokenizer(m) for found in markers for m in found[:1])
                      if t is not None and t.digest == source.digest][: len(plans) - len(described)]
        needs_load = any(p.to_tokenize or p.to_pack for p in plans) or len(described) < len(plans)
        loaded = encoder = None
        if needs_load:
            if not writable:
                raise UserError(_read_only_message(cache, [_read_only_reason(p, o, None) for p, o in zip(plans, olds)]))
            loaded, encoder = _load(cfg, _sample_lines(plans[0].shards[0], plans[0].fmts[0], cfg), source.digest)
            tokenizer = replace(loaded.identity, encoder=encoder)
        else:
            # Same digest => same tokenizer: its description need not be reloaded.
            tokenizer = replace(described[0], name_or_path=source.name_or_path)
        reports, read_only_reasons = [], []
        work = [p for p in plans if p.to_tokenize]
        with _executor(cfg, loaded, encoder, source, plans) if work else nullcontext() as tokenize:
            for plan, old in zip(plans, olds):
                t0 = time.perf_counter() if plan is not plans[0] else start
                n_tok, n_pack = plan.shards_of(plan.to_tokenize), plan.shards_of(plan.to_pack)
                examples = tokenize(plan) if n_tok else build.Examples()
                build.pack_split(plan, cfg.max_seq_length)
                manifest = build.make_manifest(plan, tokenizer, parameters(cfg, plan.split), command)
                _check_bad(plan.split, manifest, examples, cfg.strict)
                _check_encoding(plan, manifest, cfg.strict, tokenized=bool(n_tok))
                if plan.reading["select"] is not None and manifest.totals()["lines"] == 0:
                    build.warn(f"{plan.split}: no document of --train_dir went into this split with "
                               f"--validation_split_percentage {cfg.validation_split_percentage}; the train stage "
                               "refuses an empty split: change the percentage")
                if n_tok:
                    _warn_unknown(plan.split, manifest, examples.unk)
                force = bool(cfg.overwrite_cache or n_tok or n_pack)
                if not writable:
                    reason = "--overwrite_cache asks to rebuild it" if cfg.overwrite_cache else None
                    read_only_reasons.append(reason or _read_only_reason(plan, old, manifest))
                    written = False
                else:
                    written = build.commit_split(plan, manifest, old, force=force)
                    _remove_unreferenced(cache, plan, manifest)
                    slices.clear_markers(plan.out_dir)
                reports.append(build.SplitReport(plan.split, len(plan.shards), n_tok, n_pack, not written,
                                                 manifest.totals(), time.perf_counter() - t0))
        if any(read_only_reasons):
            raise UserError(_read_only_message(cache, read_only_reasons))
        return reports


def _remove_unreferenced(cache: Path, plan: build.SplitPlan, manifest: Manifest) -> None:
    """Delete what the new manifest no longer names, except what a running training job reads (its lease)."""
    files, holders = leases.leased(cache, plan.split)
    named = {f.path for p in manifest.pieces for f in p.arrays()}
    kept = [f for f in files - named if f.endswith(".tokens.npy") and (plan.out_dir / f).is_file()]
    build.remove_unreferenced(plan.out_dir, manifest, files)
    if kept:
        print(f"note: {plan.split}: kept {len(kept)} pieces the new manifest no longer names: a training job reads "
              f"them ({', '.join(holders)}); a run after it ends removes them", file=sys.stderr)


def _marker_tokenizer(marker: dict) -> TokenizerIdentity | None:
    try:
        return build_dataclass(TokenizerIdentity, marker.get("tokenizer"), "marker.tokenizer")
    except (ShapeError, TypeError):
        return None


def _slice_note(plan: build.SplitPlan, markers: list[dict]) -> None:
    """What the slices of a sliced build left, for the run that commits it: the pieces found and,
    if any are missing, the slice that should have built them (this run tokenizes them)."""
    if not markers:
        return
    n = markers[-1]["num_slices"]
    built = {k for m in markers for k in m["pieces"] if isinstance(k, str)}
    found = sum(1 for i, key in enumerate(plan.keys) if key in built and plan.records[i] is not None)
    finished = sorted({m.get("slice") for m in markers if m["num_slices"] == n})
    line = (f"note: {plan.split}: {found} of {len(plan.keys)} pieces were built by slices ({len(finished)} of {n} "
            "slices left their marker)")
    if plan.to_tokenize:
        owner = slices.assign([sum(plan.scans[i].size for i in g) for g in plan.groups], n)
        missing: dict[int, list[str]] = {}
        for i in plan.to_tokenize:
            missing.setdefault(owner[i], []).extend(plan.names[j] for j in plan.groups[i])
        line += "; missing, so tokenized now: " + "; ".join(
            f"{', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''} (slice {k} of {n} "
            "should have built them: did it fail, or did the text change?)" for k, names in sorted(missing.items()))
    print(line, file=sys.stderr)


@dataclass
class SliceReport:
    split: str
    line_text: str

    def line(self) -> str:
        return self.line_text


def _run_slice(cfg: PreprocessConfig, inputs: list, source: TokenizerSource, sliced: tuple[int, int],
               cache: Path) -> list[SliceReport]:
    """Build this slice's share of every split (slices.py): its pieces and their blocks, then a marker;
    no manifest, no cleanup (other slices are writing)."""
    k, n = sliced
    plans, scanned = [], {}
    for split, input_dir, names, shards, fmts in inputs:
        sizes = [p.stat().st_size for p in shards]
        groups = build.piece_groups(names, sizes, cfg.task_bytes)
        owner = slices.assign([sum(sizes[i] for i in g) for g in groups], n)
        mine = [g for g, o in zip(groups, owner) if o == k]
        if input_dir not in scanned:  # both sides of a held-out split read the same shards
            own = sorted(i for g in mine for i in g)
            full: list[Scan | None] = [None] * len(shards)
            for i, scan in zip(own, _scan_shards(split, [shards[i] for i in own], [fmts[i] for i in own], cfg)):
                full[i] = scan
            scanned[input_dir] = full
        plans.append(build.plan_split(split, input_dir, cache / split, names, shards, fmts, scanned[input_dir],
                                      source.digest, cfg.max_seq_length, cfg.overwrite_cache, cfg.verify_outputs,
                                      piece_bytes=cfg.task_bytes, column=cfg.text_column,
                                      select=cfg.select(split), groups=mine))
    first = next(((p, g[0]) for p in plans for g in p.groups), None)
    sample = (first[0].shards[first[1]], first[0].fmts[first[1]]) if first else (inputs[0][3][0], inputs[0][4][0])
    loaded, encoder = _load(cfg, _sample_lines(*sample, cfg), source.digest)
    identity = replace(loaded.identity, encoder=encoder)
    reports = []
    work = [p for p in plans if p.to_tokenize]
    with _task_map(cfg, loaded, encoder, plans) if work else nullcontext() as task_map:
        for plan in plans:
            t0 = time.perf_counter()
            n_tok, n_pack = plan.shards_of(plan.to_tokenize), plan.shards_of(plan.to_pack)
            if n_tok:
                build.tokenize_split(plan, loaded.identity.dtype, task_map, cfg.strict)
            build.pack_split(plan, cfg.max_seq_length)
            slices.write_marker(plan.out_dir, k, n, plan.keys, to_json(identity))
            reports.append(SliceReport(plan.split, (
                f"{plan.split}: slice {k} of {n}: {len(plan.keys)} pieces ({plan.shards_of(list(range(len(plan.keys))))} "
                f"shards), {n_tok} shards tokenized, {n_pack} packed, {time.perf_counter() - t0:.1f} s; once every "
                "slice is done, run the same command without --num_slices/--slice to commit")))
    return reports


def _check_bad(split: str, manifest: Manifest, examples: build.Examples, strict: bool) -> None:
    """Records without usable text: an error with ``strict`` (also those of reused pieces), else a warning
    naming the first few."""
    bad = [s for s in manifest.shards if s.bad_records]
    if not bad:
        return
    total = sum(s.bad_records for s in bad)
    named = "; ".join(examples.bad) or ", ".join(s.path for s in bad[:5])
    if strict:
        raise UserError(f"{split}: {total:,} records without usable text in {len(bad)} shards ({named}); "
                        "--strict refuses them (drop --strict to count and skip them)")
    if examples.bad:  # named once, by the run that read them; mlm-inspect show keeps the counts
        build.warn(f"{split}: {total:,} records without usable text skipped, in {len(bad)} shards "
                   f"(counted in the manifest, see mlm-inspect show): {named}")


ENCODING_SHARE = 0.01  # invalid UTF-8 sequences per stored byte above which a shard is likely in another encoding
SNIFF_BYTES = 1 << 16
TIS620_THAI = set(range(0xA1, 0xDB)) | set(range(0xDF, 0xFC))  # TIS-620's Thai letters, vowels, digits


def guess_encoding(path: Path, fmt: Format) -> str | None:
    """A guess, from the bytes that are not UTF-8 in the first 64 KB, of the 8-bit encoding a shard is in:
    TIS-620 when nearly all of them lie in its Thai range, else CP1252; None for a compressed or
    Parquet shard (its stored bytes say nothing) or a head that is valid UTF-8."""
    if not fmt.ranges:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None
    bad = [ord(c) - 0xDC00 for c in head.decode("utf-8", errors="surrogateescape") if "\udc80" <= c <= "\udcff"]
    if not bad:
        return None
    return "TIS-620" if sum(b in TIS620_THAI for b in bad) >= 0.9 * len(bad) else "CP1252"


def _check_encoding(plan: build.SplitPlan, manifest: Manifest, strict: bool, tokenized: bool) -> None:
    """Shards that are mostly not UTF-8 (a legacy encoding: TIS-620 Thai, CP1252): named with their share
    of replaced sequences and a labelled guess of the encoding and the iconv line; an error with ``strict``."""
    index = {name: k for k, name in enumerate(plan.names)}
    found = []
    for s in manifest.shards:
        share = s.invalid_utf8 / max(s.bytes, 1)
        if s.invalid_utf8 and share > ENCODING_SHARE:
            k = index[s.path]
            enc = guess_encoding(plan.shards[k], plan.fmts[k])
            fix = (f"guessing from its bytes, it is {enc}: iconv -f {enc} -t UTF-8 {shlex.quote(str(plan.shards[k]))}"
                   " > converted, then put that in its place" if enc else "convert it to UTF-8 (iconv -f ... -t UTF-8)")
            found.append(f"{s.path}: {s.invalid_utf8:,} invalid UTF-8 sequences replaced with U+FFFD "
                         f"({share:.1%} of its bytes); {fix}")
    if not found:
        return
    more = f" (and {len(found) - 3} more shards)" if len(found) > 3 else ""
    said = f"{plan.split}: text that is likely not UTF-8: {'; '.join(found[:3])}{more}"
    if strict:
        raise UserError(f"{said}; --strict refuses such shards (over {ENCODING_SHARE:.0%} of their bytes)")
    if tokenized:
        build.warn(said)


def _warn_unknown(split: str, manifest: Manifest, examples: list[str]) -> None:
    """Warn when the vocabulary misses much of the text (e.g. an English WordPiece on Thai)."""
    t = manifest.totals()
    share = unk_share(t["unk_tokens"], t["tokens"], t["lines"])
    if share <= UNK_WARN_SHARE:
        return
    worst = max(manifest.shards, key=lambda s: unk_share(s.unk_tokens, s.tokens, s.lines))
    build.warn(f"{split}: {share:.1%} of the ids are the unknown token (worst shard: {worst.path}, "
               f"{unk_share(worst.unk_tokens, worst.tokens, worst.lines):.1%}); the tokenizer's vocabulary "
               "does not cover this text: check --tokenizer_name_or_path. Lines with one: "
               + " | ".join(repr(x) for x in examples))


def _read_only_reason(plan: build.SplitPlan, old: Manifest | None, manifest: Manifest | None) -> str | None:
    """Why a split of a cache we cannot write is not usable as it is; None if it is.

    Only where the text and the tokenizer live may differ: the same cache
    copied to another machine, its corpus mounted elsewhere, is still fresh.
    """
    if old is None:
        return f"{plan.split} has no readable manifest"
    if plan.to_tokenize or plan.to_pack:
        return (f"{plan.split} needs {plan.shards_of(plan.to_tokenize)} shards tokenized, "
                f"{plan.shards_of(plan.to_pack)} packed")
    if manifest is not None and old.fingerprint(where=False) != manifest.fingerprint(where=False):
        return f"{plan.split} was built with other settings (e.g. --datasets_type)"
    return None


def _read_only_message(cache: Path, reasons: list[str | None]) -> str:
    return (f"--datasets_cache_dir {cache} cannot be written (read-only or no permission) and is not fresh: "
            f"{'; '.join(r for r in reasons if r)}; preprocess where the cache is writable, then copy it")
