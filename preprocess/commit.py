"""The commit: a split's finished plan becomes its manifest, checked, written only if it changed, and
what it no longer names is deleted (unless a training job reads it). Also what the commit says about it:
records without text, text that is likely not UTF-8, a vocabulary that misses the text, what slices left.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from common import leases
from common.check import check_split
from common.errors import UserError, counted
from common.format import MANIFEST_NAME
from common.manifest import Manifest, Parameters, PieceInfo, ShardInfo, TokenizerIdentity, unk_share, write_manifest
from common.packing import PACKING
from common.typed_json import ShapeError, from_json
from preprocess.cache_dir import remove_unreferenced
from preprocess.cleaning import CLEANING
from preprocess.config import PreprocessConfig
from preprocess.encoding import ENCODING_SHARE, guess_encoding
from preprocess.piece import Examples
from preprocess.plan import SplitPlan, assign
from preprocess.records import warn

UNK_WARN_SHARE = 0.05  # above it, the vocabulary misses the text: warn


@dataclass
class SplitReport:
    split: str
    shards: int
    tokenized: int  # shards, counted by the pieces that hold them
    repacked: int
    fresh: bool
    totals: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    sliced: tuple[int, int] | None = None  # (K, N): slice K of a sliced build built its share
    pieces: int = 0  # this run's pieces (a slice's share)

    def line(self) -> str:
        if self.sliced is not None:
            k, n = self.sliced
            return (f"{self.split}: slice {k} of {n}: {counted(self.pieces, 'piece')} ({counted(self.shards, 'shard')}), "
                    f"{counted(self.tokenized, 'shard')} tokenized, {self.repacked:,} packed, {self.seconds:.1f} s; "
                    "once every slice is done, "
                    "run the same command without --num_slices/--slice to commit")
        t = self.totals
        state = "cache is fresh, nothing to do" if self.fresh else (
            f"{counted(self.shards - self.tokenized, 'shard')} reused, {self.tokenized:,} tokenized, "
            f"{self.repacked:,} repacked"
        )
        return (
            f"{self.split}: {state}; {counted(t['shards'], 'shard')} in {counted(t['pieces'], 'piece')}, "
            f"{counted(t['lines'], 'line')}, {counted(t['tokens'], 'token')}, {counted(t['blocks'], 'block')}, "
            f"{counted(t['lines_split'], 'long line')} split, {self.seconds:.1f} s"
        )


def parameters(cfg: PreprocessConfig, split: str) -> Parameters:
    held_out = None
    if cfg.validation_split_percentage is not None:
        held_out = {"percentage": cfg.validation_split_percentage, "seed": cfg.validation_split_seed, "side": split}
    return Parameters(cfg.ext, cfg.max_seq_length, cfg.datasets_type, cfg.add_space_token, CLEANING, PACKING,
                      cfg.recursive, cfg.text_column if cfg.records else None, held_out,
                      task_size_mb=cfg.task_size_mb)


def checked_manifest(cfg: PreprocessConfig, plan: SplitPlan, tokenizer: TokenizerIdentity, examples: Examples,
                     command: list[str], tokenized: bool) -> Manifest:
    """The split's new manifest, once what it records passed the checks (an error with --strict) and
    what deserves a warning was said: records without text, text likely not UTF-8, an empty held-out
    side, a vocabulary that misses the text. ``tokenized``: this run read text (it names examples)."""
    manifest = make_manifest(plan, tokenizer, parameters(cfg, plan.split), command)
    check_bad(plan.split, manifest, examples, cfg.strict)
    check_encoding(plan, manifest, cfg.strict, tokenized)
    if cfg.select(plan.split) is not None and manifest.totals()["lines"] == 0:
        warn(f"{plan.split}: no document of --train_dir went into this split with "
             f"--validation_split_percentage {cfg.validation_split_percentage}; the train stage "
             "refuses an empty split: change the percentage")
    if tokenized:
        warn_unknown(plan.split, manifest, examples.unk)
    return manifest


def make_manifest(plan: SplitPlan, tokenizer: TokenizerIdentity, parameters: Parameters, command: list[str]) -> Manifest:
    from common import __version__

    shards, pieces = [], []
    for job in plan.pieces:
        if job.listed is not None:  # as the old manifest lists it: only where its text is may have changed
            info, members = job.listed
            shards += [replace(m, path=plan.names[i], mtime_ns=scan.mtime_ns)
                       for i, scan, m in zip(job.shards, job.scans, members)]
            pieces.append(info)
            continue
        rec, blk = job.record, job.blocks
        assert rec is not None and blk is not None
        for i, scan, member in zip(job.shards, job.scans, rec["shards"]):  # checked when read or written
            shards.append(ShardInfo(path=plan.names[i], **member, mtime_ns=scan.mtime_ns))
        pieces.append(PieceInfo.from_dict({**rec, "shards": len(job.shards), "blocks": blk}))
    return Manifest(
        input_dir=plan.input_dir,
        tokenizer=tokenizer,
        parameters=parameters,
        shards=shards,
        pieces=pieces,
        created_by={"command": command, "version": __version__,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )


def old_manifest(out_dir: Path) -> Manifest | None:
    """The split's current manifest; None if there is none or it is unreadable (with a warning:
    the run then rebuilds what it must, reusing every valid piece, and rewrites it)."""
    if not (out_dir / MANIFEST_NAME).exists():
        return None
    c = check_split(out_dir, sizes=False)  # each piece's arrays are checked as the plan reuses it
    if c.manifest is None:
        warn(f"{c.unreadable}; treating the split as unbuilt: valid pieces are reused and the manifest rewritten")
    return c.manifest


def same_content(a: Manifest, b: Manifest) -> bool:
    """Whether two manifests record the same dataset: every field but who wrote them and when (what
    ``fingerprint`` hashes), compared as dataclasses, not serialised twice (15 s at 36,000 pieces)."""
    return all(getattr(a, f.name) == getattr(b, f.name) for f in fields(Manifest) if f.name != "created_by")


def commit_split(plan: SplitPlan, manifest: Manifest, old: Manifest | None, force: bool) -> bool:
    """Write the manifest if work was done (``force``) or it differs from ``old``; True if it was written."""
    if not force and old is not None and same_content(old, manifest):
        return False
    write_manifest(plan.out_dir, manifest)
    return True


def clean_up(cache: Path, plan: SplitPlan, manifest: Manifest) -> None:
    """Delete what the new manifest no longer names, except what a running training job reads (its lease)."""
    files, holders = leases.leased(cache, plan.split)
    named = {f.path for p in manifest.pieces for f in p.arrays()}
    kept = [f for f in files - named if f.endswith(".tokens.npy") and (plan.out_dir / f).is_file()]
    remove_unreferenced(plan.out_dir, manifest, files)
    if kept:
        print(f"note: {plan.split}: kept {len(kept)} pieces the new manifest no longer names: a training job reads "
              f"them ({', '.join(holders)}); a run after it ends removes them", file=sys.stderr)


def retire_split(cache: Path, split: str) -> None:
    """Remove a split the previous build made and this one does not (a validation split, when this run
    is given no --eval_dir and no --validation_split_percentage): left in place, training would evaluate
    on it, though its text may now be training text. The manifest goes first (the commit point: from then
    on nothing reads the split), then its files, but those a running job reads (its lease)."""
    out_dir = cache / split
    (out_dir / MANIFEST_NAME).unlink()
    files, holders = leases.leased(cache, split)
    remove_unreferenced(out_dir, None, files)
    for d in sorted((p for p in out_dir.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True) + [out_dir]:
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty: what a job still reads, or a user put there, stays
    kept = f"; {len(files)} files a training job reads stay until a run after it ends ({', '.join(holders)})" \
        if files else ""
    print(f"note: {out_dir}: removed the {split} split of the previous build: this run was given no validation "
          f"text (--eval_dir or --validation_split_percentage){kept}", file=sys.stderr)


def marker_tokenizer(marker: dict) -> TokenizerIdentity | None:
    try:
        return from_json(TokenizerIdentity, marker.get("tokenizer"), "marker.tokenizer")
    except (ShapeError, TypeError):
        return None


def slice_note(plan: SplitPlan, markers: list[dict]) -> None:
    """What the slices of a sliced build left, for the run that commits it: the pieces found and,
    if any are missing, the slice that should have built them (this run tokenizes them)."""
    if not markers:
        return
    n = markers[-1]["num_slices"]
    built = {k for m in markers for k in m["pieces"] if isinstance(k, str)}
    found = sum(1 for p in plan.pieces if p.key in built and not p.needs_tokens)
    finished = sorted({m.get("slice") for m in markers if m["num_slices"] == n})
    line = (f"note: {plan.split}: {found} of {len(plan.pieces)} pieces were built by slices ({len(finished)} of {n} "
            "slices left their marker)")
    if plan.to_tokenize:
        owner = assign([sum(plan.sizes[i] for i in g) for g in plan.groups], n)
        missing: dict[int, list[str]] = {}
        for g, job in enumerate(plan.pieces):  # a plain run plans every piece, in order
            if job.needs_tokens:
                missing.setdefault(owner[g], []).extend(plan.names[j] for j in job.shards)
        line += "; missing, so tokenized now: " + "; ".join(
            f"{', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''} (slice {k} of {n} "
            "should have built them: did it fail, or did the text change?)" for k, names in sorted(missing.items()))
    print(line, file=sys.stderr)


def check_bad(split: str, manifest: Manifest, examples: Examples, strict: bool) -> None:
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
        warn(f"{split}: {total:,} records without usable text skipped, in {len(bad)} shards "
                   f"(counted in the manifest, see mlm-inspect show): {named}")


def check_encoding(plan: SplitPlan, manifest: Manifest, strict: bool, tokenized: bool) -> None:
    """Shards that are mostly not UTF-8 (a legacy encoding: TIS-620 Thai, CP1252): named with their share
    of replaced sequences and a labelled guess of the encoding and the iconv line; an error with ``strict``."""
    index = {name: k for k, name in enumerate(plan.names)}
    found = []
    for s in manifest.shards:
        share = s.invalid_utf8 / max(s.bytes, 1)
        if s.invalid_utf8 and share > ENCODING_SHARE:
            k = index[s.path]
            enc = guess_encoding(plan.paths[k], plan.fmts[k])
            fix = (f"guessing from its bytes, it is {enc}: iconv -f {enc} -t UTF-8 {shlex.quote(str(plan.paths[k]))}"
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
        warn(said)


def warn_unknown(split: str, manifest: Manifest, examples: list[str]) -> None:
    """Warn when the vocabulary misses much of the text (e.g. an English WordPiece on Thai)."""
    t = manifest.totals()
    share = unk_share(t["unk_tokens"], t["tokens"], t["lines"])
    if share <= UNK_WARN_SHARE:
        return
    worst = max(manifest.shards, key=lambda s: unk_share(s.unk_tokens, s.tokens, s.lines))
    warn(f"{split}: {share:.1%} of the ids are the unknown token (worst shard: {worst.path}, "
               f"{unk_share(worst.unk_tokens, worst.tokens, worst.lines):.1%}); the tokenizer's vocabulary "
               "does not cover this text: check --tokenizer_name_or_path. Lines with one: "
               + " | ".join(repr(x) for x in examples))


def read_only_reason(plan: SplitPlan, old: Manifest | None, manifest: Manifest | None) -> str | None:
    """Why a split of a cache we cannot write is not usable as it is; None if it is.

    Only where the text and the tokenizer live may differ: the same cache
    copied to another machine, its corpus mounted elsewhere, is still fresh.
    """
    if old is None:
        return f"{plan.split} has no readable manifest"
    if plan.to_tokenize or plan.to_pack:
        return (f"{plan.split} needs {counted(plan.shards_of(plan.to_tokenize), 'shard')} tokenized, "
                f"{plan.shards_of(plan.to_pack)} packed")
    if manifest is not None and old.fingerprint(where=False) != manifest.fingerprint(where=False):
        return f"{plan.split} was built with other settings (e.g. --datasets_type)"
    return None


def read_only_message(cache: Path, reasons: list[str | None]) -> str:
    return (f"--datasets_cache_dir {cache} cannot be written (read-only or no permission) and is not fresh: "
            f"{'; '.join(r for r in reasons if r)}; preprocess where the cache is writable, then copy it")
