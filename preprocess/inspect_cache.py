"""``mlm-inspect``: what is in a cache, is it stale, is it intact, what do its blocks say.

Works on any node, without torch and, except for ``status``, without the
text: everything it reports comes from the manifest and the arrays.

    mlm-inspect show    CACHE_OR_SPLIT [--json]
    mlm-inspect status  CACHE_OR_SPLIT [--input_dir DIR | NAME=DIR,...] [--tokenizer PATH] [-v]
    mlm-inspect verify  CACHE_OR_SPLIT
    mlm-inspect samples CACHE_OR_SPLIT [-n N]
    mlm-inspect diff    CACHE_OR_SPLIT_A CACHE_OR_SPLIT_B
    mlm-inspect run     OUTPUT_DIR [--json]        (a training run's dir: preprocess/inspect_run.py)

Exit status: 0 fresh / intact / finished, 1 stale / damaged / not finished, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from common import leases
from common.check import SplitCheck, check_split, input_dirs, refuse_shared_corpora
from common.cli import parse_args, run_command
from common.config import CacheArguments
from common.corpora import CORPORA_FILE, corpus_dir, parse_named, read_corpora, unfinished
from common.errors import UserError, counted
from common.format import MANIFEST_NAME, FormatError, length_bins
from common.json_files import read_json
from common.manifest import Manifest, unk_share
from common.rebuild import corpus_text, named_rebuild_command, rebuild_command
from common.tokenizer import TRAINING_FILE, TokenizerError, load_tokenizer, tokenizer_source
from common.typed_json import to_json
from preprocess.inspect_run import run_report, run_summary

REBUILD_HINT = "rerun preprocessing with the same flags to rewrite it (valid pieces are reused)"
STATUS_NAMES = 10  # shard names listed per changed, added or removed state by ``status`` without -v


def read_manifest(split: Path) -> Manifest:
    """The split's manifest, or a UserError that also says how to fix it."""
    c = check_split(split, sizes=False)
    if c.manifest is None:
        raise UserError(f"{c.unreadable}; {REBUILD_HINT}")
    return c.manifest


def _is_split(path: str | Path) -> bool:
    """A split dir itself (or its manifest.json), not a cache dir."""
    p = Path(path)
    return (p.name == MANIFEST_NAME and p.is_file()) or (p / MANIFEST_NAME).is_file()


def split_dirs(path: str | Path) -> dict[str, Path]:
    """Split dirs by label: a split dir itself (or its manifest.json) by its name, every split of a cache dir
    by its name, or of a named cache by corpus and split (``news/train``), in the order corpora.json names them."""
    p = Path(path)
    if _is_split(p):
        d = p.parent if p.name == MANIFEST_NAME else p
        return {d.name: d}
    names = read_corpora(p)
    words = unfinished(p) if names is None else None
    if words:
        raise UserError(words)
    if names is not None:  # named corpora (common/corpora.py): each one's splits, train first
        return {f"{n}/{d.name}": d for n in names for d in [corpus_dir(p, n) / "train", *sorted(
            x.parent for x in corpus_dir(p, n).glob(f"*/{MANIFEST_NAME}") if x.parent.name != "train")]}
    found = sorted(d.parent for d in p.glob(f"*/{MANIFEST_NAME}"))
    if not found:
        raise UserError(f"{path}: no {MANIFEST_NAME} here or in its subdirs; is it a cache dir or a split dir?")
    return {d.name: d for d in found}


def corpora_table(cache: Path) -> str:
    """The named corpora of a cache: each one's training tokens and blocks, and its share by size (what a run
    without --mixture gives it; weights are chosen at train time and never change the cache)."""
    names = read_corpora(cache) or []
    totals = {n: read_manifest(corpus_dir(cache, n) / "train").totals() for n in names}
    blocks = sum(t["blocks"] for t in totals.values()) or 1
    lines = [f"{cache}: {len(names)} named corpora ({cache / CORPORA_FILE}); a run weighs them by size unless "
             "mlm-train --mixture NAME=W,... or --mixture_alpha says otherwise",
             f"  {'corpus':<14} {'tokens':>14} {'blocks':>12} {'share by size':>14}"]
    lines += [f"  {n:<14} {t['tokens']:>14,} {t['blocks']:>12,} {t['blocks'] / blocks:>14.1%}" for n, t in totals.items()]
    return "\n".join(lines) + "\n"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def histogram_lines(counts: list[int], width: int = 40, top_length: int | None = None) -> list[str]:
    """A text histogram over the power-of-two length bins; empty edge bins left out. ``top_length``:
    the longest length there can be (a block's max_seq_length), so no bin is labelled past it."""
    edges = length_bins()
    nz = [i for i, c in enumerate(counts) if c]
    if not nz:
        return ["    (empty)"]
    top = max(counts)
    out = []
    for i in range(nz[0], nz[-1] + 1):
        lo = int(edges[i])
        hi = int(edges[i + 1]) - 1 if i + 1 < len(edges) - 1 else None  # None: the last bin, unbounded
        if top_length is not None:
            hi = top_length if hi is None else min(hi, top_length)
        label = f">={lo}" if hi is None else str(lo) if hi == lo else f"{lo}-{hi}"
        bar = "#" * max(1 if counts[i] else 0, round(width * counts[i] / top))
        out.append(f"    {label:>13} {counts[i]:>12,} {bar}")
    return out


def _worst_bad(m: Manifest) -> str:
    worst = max(m.shards, key=lambda s: s.bad_records, default=None)
    return f"; most in {worst.path} ({worst.bad_records:,})" if worst is not None and worst.bad_records else ""


def _text_size(m: Manifest) -> str:
    """The bytes of text the split's shards gave it, or why they are not known (text_bytes is recorded
    since it was counted: a cache built before lacks it until rebuilt)."""
    known = [s.text_bytes for s in m.shards if s.text_bytes is not None]
    if len(known) == len(m.shards):
        return f"{_size(sum(known))} of text"
    if not known:
        return "text size not recorded: built before it was counted, --overwrite_cache records it"
    return (f"{_size(sum(known))} of text in {counted(len(known), 'shard')}, not recorded for the other "
            f"{len(m.shards) - len(known):,} (built before it was counted)")


def _contents(m: Manifest, t: dict[str, int]) -> list[str]:
    """What the split holds: its shards, or, for a side of a split held out of the training dir, its
    own documents (every shard of the dir is listed, but gave it only some of its documents)."""
    stored = f"{_size(t['bytes'])} stored"
    held = m.parameters.validation_split
    if held is None:
        return [f"shards     {counted(t['shards'], 'shard')} ({stored}, {_text_size(m)}) in {counted(t['pieces'], 'piece')}, "
                f"{counted(t['lines'], 'line')}, {counted(t['tokens'], 'token')}"]
    pct = held.get("percentage")
    share = f"{pct:g}" if isinstance(pct, (int, float)) else str(pct)
    share += f"% of the documents of the train dir (seed {held.get('seed')})"
    if held.get("side") == "validation":
        what = f"held out   {share}: this split holds only those"
    else:
        what = f"held out   {share} went to the validation split; this split holds the rest"
    gave = sum(1 for s in m.shards if s.lines)
    return [what,
            f"holds      {counted(t['lines'], 'line')}, {counted(t['tokens'], 'token')}, {_text_size(m)}, in "
            f"{counted(t['pieces'], 'piece')}; from {gave:,} of the train dir's {counted(t['shards'], 'shard')} ({stored})"]


def tokenizer_origin(name_or_path: str) -> list[str]:
    """Where the cache's tokenizer came from, when mlm-train-tokenizer made it (its training.json)."""
    path = Path(name_or_path)
    f = (path if path.is_dir() else path.parent) / TRAINING_FILE
    if not f.is_file():
        return []
    try:
        d = read_json(f)
        corpora = ", ".join(f"{n} ({c['weight']:.0%} asked, {c['text_bytes']:,} bytes, {len(c['shards'])} shards)"
                            for n, c in d["corpora"].items())
        return [f"           trained ({d['type']}) on a sample of {d['sample']['text_bytes']:,} bytes, seed "
                f"{d['seed']}, digest {d['sample']['digest']}, of {corpora} ({f})"]
    except (FormatError, KeyError, TypeError, AttributeError) as e:
        return [f"           {f}: unreadable ({e})"]


def show(split: Path, m: Manifest) -> str:
    t, tok, p = m.totals(), m.tokenizer, m.parameters
    stats = m.stats()
    lines = [
        f"== {split}",
        f"built      {m.created_by.get('created_at', '?')} by {m.created_by.get('version', '?')}: "
        f"{' '.join(m.created_by.get('command', []))}",
        f"input      {m.input_dir}",
        f"tokenizer  {tok.type} {tok.class_name} at {tok.name_or_path} (digest {tok.digest})",
        *tokenizer_origin(tok.name_or_path),
        f"           vocab {tok.vocab_size:,}, dtype {tok.dtype}, special ids {to_json(tok.special_ids)}, "
        f"separator {to_json(tok.separator)}, encoder {tok.encoder}",
        f"parameters max_seq_length {p.max_seq_length}, datasets_type {p.datasets_type}, "
        f"add_space_token {p.add_space_token}, ext {p.ext}"
        + (f", text_column {p.text_column}" if p.text_column else ""),
        *_contents(m, t),
        f"blocks     {counted(t['blocks'], 'block')} of at most {p.max_seq_length} tokens; "
        f"{counted(t['lines_split'], 'long line')} split into pieces",
        f"cleaning   {counted(t['invalid_utf8'], 'invalid UTF-8 sequence')} replaced, "
        f"{counted(t['lines_without_tokens'], 'line')} without tokens dropped",
        f"records    {counted(t['bad_records'], 'bad record')} skipped (not JSON, no text field, null text, damaged "
        f"compressed data){_worst_bad(m)}",
        f"unknown    {counted(t['unk_tokens'], 'id')} of the unknown token "
        f"({unk_share(t['unk_tokens'], t['tokens'], t['lines']):.2%} of the ids)",
        f"disk       {_size(t['disk_bytes'])} of arrays ({t['disk_bytes'] / max(t['tokens'], 1):.2f} bytes/token)",
        f"readers    {_readers(split)}",
        "line lengths (tokens):",
        *histogram_lines(stats["line_hist"]),
        "block lengths (tokens):",
        *histogram_lines(stats["block_hist"], top_length=p.max_seq_length),
    ]
    return "\n".join(lines)


def _readers(split: Path) -> str:
    """The training jobs that read this split now (their leases, common/leases.py)."""
    live = [x for x in leases.read_leases(split.parent) if split.name in x.files]
    if not live:
        return "no training job reads this split now"
    return "training jobs reading it (a preprocess rerun keeps their pieces): " + ", ".join(
        f"{x.who} since {x.started}" for x in live)


def state_lines(c: SplitCheck, verbose: bool) -> list[str]:
    """The shards' states: a count per state, then the names of the changed, added and removed ones,
    the first STATUS_NAMES of each (``verbose``: every shard's name and state, unchanged ones too)."""
    states = ("unchanged", "changed", "added", "removed")
    out = ["  shards    " + ", ".join(f"{len(getattr(c, s)):,} {s}" for s in states)]
    if verbose:
        return out + c.shard_lines()
    for state in states[1:]:
        names = getattr(c, state)
        out += [f"  {state:<9} {name}" for name in names[:STATUS_NAMES]]
        if len(names) > STATUS_NAMES:
            out.append(f"  {state:<9} ... and {len(names) - STATUS_NAMES:,} more (-v lists every shard)")
    return out


def status(split: Path, m: Manifest, input_dir: str | None, tokenizer: str | None,
           verbose: bool = False) -> tuple[bool, str]:
    """(fresh?, report) comparing the manifest with the text and tokenizer as they are now."""
    src_dir = input_dir or m.input_dir
    for d in input_dirs(src_dir):
        if not d.is_dir():
            raise UserError(f"{split}: input dir {d} not found; pass --input_dir where the shards are now "
                            "(several: comma-separated)")
    tok_path = tokenizer or m.tokenizer.name_or_path
    try:
        source = tokenizer_source(tok_path, m.tokenizer.type, m.tokenizer.settings)
    except TokenizerError:
        source = None
    c = check_split(split, tokenizer=source, input_dir=src_dir, sizes=False, manifest=m)
    out = [f"== {split} against {src_dir}"]
    out += state_lines(c, verbose)
    tok_state = "missing" if source is None else "changed" if c.tokenizer else "unchanged"
    out.append(f"  tokenizer {tok_state}: {tok_path}")
    fresh = source is not None and not c.stale
    out.append("fresh" if fresh else "stale: rerun preprocessing (only what changed is redone)")
    return fresh, "\n".join(out)


def given_inputs(path: str, input_dir: str | None) -> dict[str | None, str]:
    """``--input_dir`` by corpus: ``{name: dirs}`` from NAME=DIR entries on a named cache, ``{None: dirs}``
    on an unnamed cache or a split dir, ``{}`` without it. UserError for a bare dir on a named cache (which
    corpus's text is it?), NAME=DIR elsewhere, or a name the cache does not hold."""
    if not input_dir:
        return {}
    names = read_corpora(path)
    entries = parse_named(input_dir, "--input_dir")
    if names is None:
        if entries is not None and not Path(input_dir).is_dir():
            raise UserError(f"--input_dir {input_dir}: {path} is not a named cache (no {CORPORA_FILE}), so no "
                            f"corpus to name; give the dir alone (--input_dir {','.join(entries.values())})")
        return {None: input_dir}
    if entries is None:
        raise UserError(f"--input_dir {input_dir}: {path} holds named corpora ({', '.join(names)}); name the "
                        f"corpus whose text is there: --input_dir NAME={input_dir} (several: NAME=DIR,NAME2=DIR2; "
                        "a corpus not named is checked against the dirs its manifests record)")
    unknown = [n for n in entries if n not in names]
    if unknown:
        raise UserError(f"--input_dir {input_dir}: {path} has no corpus {unknown[0]!r}; its corpora: "
                        f"{', '.join(names)}")
    return dict(entries)


def input_for(label: str, m: Manifest, given: dict[str | None, str], whole_split: bool) -> str | None:
    """The dirs ``status`` checks split ``label`` against: what ``--input_dir`` gives its corpus, or None (the
    dirs its manifest records). On a cache dir, ``--input_dir`` names the training text, as mlm-train's
    ``--train_dir`` does: it covers the train split and a validation split held out of it, while a split built
    from its own ``--eval_dir`` keeps its recorded dirs. A split dir given alone takes ``--input_dir`` whatever
    it holds (``whole_split``)."""
    src = given.get(label.split("/")[0] if "/" in label else None)
    if src is None or whole_split or label.split("/")[-1] == "train" or m.parameters.validation_split is not None:
        return src
    return None


def verify(split: Path, m: Manifest) -> tuple[bool, str]:
    """(intact?, report): every array's size and digest against the manifest."""
    c = check_split(split, digests=True, manifest=m)
    out = [f"== {split}", *(f"  BAD {d}" for d in c.damaged)]
    out.append("damaged: rebuild with --overwrite_cache" if c.damaged else "intact")
    return not c.damaged, "\n".join(out)


def samples(split: Path, m: Manifest, n: int, tokenizer_type: str | None = None) -> str:
    from common.reader import SplitReader

    reader = SplitReader(split, m)
    t = m.tokenizer
    if ":" in t.type and tokenizer_type is None:
        # A module named only by a file must never be imported: the manifest is data, not code.
        raise UserError(f"{split}: the cache was built with the tokenizer class {t.type}; decoding imports it, "
                        f"so pass --tokenizer_type {t.type} to allow that")
    try:
        loaded = load_tokenizer(t.name_or_path, tokenizer_type or t.type, t.settings)
    except TokenizerError as e:
        raise UserError(f"cannot decode samples: {e}") from None
    out = [f"== {split}: {min(n, reader.n_blocks)} of {reader.n_blocks:,} blocks"]
    if loaded.identity.digest != t.digest:
        out.append(f"  warning: the tokenizer at {t.name_or_path} changed since the cache was built")
    picks = np.unique(np.linspace(0, reader.n_blocks - 1, num=min(n, reader.n_blocks)).astype(int)) if reader.n_blocks else []
    for i in picks:
        ids = reader.block(int(i))
        out.append(f"--- block {i} ({len(ids)} tokens)")
        out.append(loaded.tokenizer.decode(ids.tolist(), skip_special_tokens=False))
    return "\n".join(out)


def diff(a: Manifest, b: Manifest, names: tuple[str, str]) -> tuple[bool, str]:
    """(same?, report) of two manifests: tokenizer, parameters, shards, totals."""
    out = [f"--- {names[0]}", f"+++ {names[1]}"]

    def section(title: str, x: dict[str, Any], y: dict[str, Any]) -> None:
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                out.append(f"{title}.{k}: {json.dumps(x.get(k), ensure_ascii=False)} -> {json.dumps(y.get(k), ensure_ascii=False)}")

    section("tokenizer", to_json(a.tokenizer), to_json(b.tokenizer))
    section("parameters", to_json(a.parameters), to_json(b.parameters))
    if a.input_dir != b.input_dir:
        out.append(f"input_dir: {a.input_dir} -> {b.input_dir}")
    sa, sb = {s.path: s for s in a.shards}, {s.path: s for s in b.shards}
    for path in sorted(set(sa) | set(sb)):
        if path not in sb:
            out.append(f"shard removed: {path}")
        elif path not in sa:
            out.append(f"shard added:   {path}")
        elif sa[path].digest != sb[path].digest:
            out.append(f"shard changed: {path} ({sa[path].tokens:,} -> {sb[path].tokens:,} tokens)")
    section("totals", a.totals(), b.totals())
    same = len(out) == 2
    out.append("no differences" if same else "")
    return same, "\n".join(line for line in out if line)


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlm-inspect", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("show", help="readable summary of each split (or --json: the manifest)")
    p.add_argument("path", help="a cache dir or one split dir")
    p.add_argument("--json", action="store_true", help="print the manifest itself")
    p = sub.add_parser("status", help="fresh or stale against the input dirs, shard by shard (exit 1 if stale)")
    p.add_argument("path", help="a cache dir or one split dir")
    p.add_argument("--input_dir", help="where the training text is now, several dirs comma-separated; on a cache "
                   "of named corpora NAME=DIR entries (NAME=a,b,NAME2=c), corpora not named keeping their recorded "
                   "dirs. On a cache dir it covers the train split and a validation split held out of it, not one "
                   "built from its own --eval_dir (give that split's dir to check it elsewhere). Default: the dirs "
                   "each manifest records")
    p.add_argument("--tokenizer", help="tokenizer path to compare (default: the one the manifest names)")
    p.add_argument("-v", "--verbose", action="store_true", help=f"list every shard and its state (default: a count "
                   f"per state and the first {STATUS_NAMES} changed, added and removed)")
    p = sub.add_parser("verify", help="re-hash every array against the manifest (exit 1 if damaged)")
    p.add_argument("path", help="a cache dir or one split dir")
    p = sub.add_parser("samples", help="decode blocks back to text, special tokens visible")
    p.add_argument("path", help="a cache dir or one split dir")
    p.add_argument("-n", type=_positive, default=3, help="how many blocks (default 3), evenly spaced")
    p.add_argument("--tokenizer_type", help="load the tokenizer as this type (needed, as a consent to import it, "
                   "when the cache names a module.path:ClassName type)")
    p = sub.add_parser("diff", help="what differs between two manifests, or two caches split by split and corpus "
                       "by corpus, a corpus or split on one side only included (exit 1 if anything)")
    p.add_argument("a", help="cache dir, split dir or manifest.json")
    p.add_argument("b", help="cache dir, split dir or manifest.json")
    p = sub.add_parser("run", help="a training run's --output_dir: finished or not, its checkpoints (complete or "
                       "not), data, latest losses, the command that resumes it (exit 1 if not finished)")
    p.add_argument("path", help="the --output_dir of an mlm-train (or run_mlm.py) run")
    p.add_argument("--json", action="store_true", help="the same as one JSON object")
    return parser


def _diff_pairs(a: str, b: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """The split dirs to compare, and a line for each corpus or split only one side of two caches has: the two
    split dirs given, a split dir and the cache's split of its name, or the splits of two caches paired by label
    (corpus with corpus, split with split)."""
    da, db = split_dirs(a), split_dirs(b)
    if _is_split(a) and _is_split(b):
        return [(next(iter(da.values())), next(iter(db.values())))], []
    na, nb = read_corpora(a), read_corpora(b)
    if (na is None) != (nb is None):
        named, other, names = (a, b, na) if na is not None else (b, a, nb)
        raise UserError(f"{named} holds named corpora ({', '.join(names)}) and {other} does not; give two split "
                        f"dirs to compare one corpus with another (e.g. {corpus_dir(named, names[0]) / 'train'})")
    only: list[str] = []
    one_sided: set[str] = set()
    if na is not None and nb is not None:
        if na != nb and set(na) == set(nb):  # the order matters: ties in the blend go to the corpus listed first
            only.append(f"corpora: {json.dumps(na)} -> {json.dumps(nb)}")
        for x, nx, ny in ((a, na, nb), (b, nb, na)):
            one_sided.update(n for n in nx if n not in ny)
            only += [f"corpus {n}: only in {x} ({corpus_dir(x, n)})" for n in nx if n not in ny]
    if not (_is_split(a) or _is_split(b)):  # a split dir given is compared with its like, nothing else
        for x, dx, dy in ((a, da, db), (b, db, da)):
            only += [f"split {k}: only in {x} ({d})" for k, d in dx.items()
                     if k not in dy and k.split("/")[0] not in one_sided]
    pairs = [(da[k], db[k]) for k in da if k in db]
    if not pairs and na is None:
        raise UserError(f"{a} and {b} share no split to compare; give two split dirs")
    return pairs, only


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), sys.argv[1:] if argv is None else argv)

    def body() -> int:
        try:
            return _run(args)
        except FormatError as e:
            raise UserError(str(e)) from None

    return run_command(body, "nothing was changed")


def _run(args: argparse.Namespace) -> int:
    if args.command == "run":
        summary = run_summary(args.path)
        print(json.dumps(summary, indent=1, ensure_ascii=False) if args.json else run_report(summary))
        return 0 if summary["finished"] else 1
    if args.command == "diff":
        pairs, only = _diff_pairs(args.a, args.b)
        all_same = not only
        for x, y in pairs:
            same, report = diff(read_manifest(x), read_manifest(y), (str(x), str(y)))
            all_same &= same
            print(report)
        if only:
            print("\n".join(only))
        return 0 if all_same else 1
    dirs = split_dirs(args.path)
    if args.command == "show" and args.json:
        docs = {label: read_manifest(d).to_dict() for label, d in dirs.items()}
        one = _is_split(args.path)
        print(json.dumps(next(iter(docs.values())) if one else docs, indent=1, ensure_ascii=False))
        return 0
    good = True
    if args.command == "show" and read_corpora(args.path) is not None:
        print(corpora_table(Path(args.path)))
    given = given_inputs(args.path, args.input_dir) if args.command == "status" else {}
    for label, split in dirs.items():
        m = read_manifest(split)
        if args.command == "show":
            print(show(split, m))
        elif args.command == "status":
            src = input_for(label, m, given, whole_split=_is_split(args.path))
            ok, report = status(split, m, src, args.tokenizer, args.verbose)
            good &= ok
            print(report)
        elif args.command == "verify":
            ok, report = verify(split, m)
            good &= ok
            print(report)
        elif args.command == "samples":
            print(samples(split, m, args.n, args.tokenizer_type))
    if args.command == "status" and not good and not _is_split(args.path):
        print(f"to bring the whole cache up to date (from any directory): {fix_command(args, dirs, given)}")
    return 0 if good else 1


def fix_command(args: argparse.Namespace, dirs: dict[str, Path], given: dict[str | None, str]) -> str:
    """The ``mlm-preprocess`` command that brings a stale cache up to date, as mlm-train prints it: the
    tokenizer given (else the one the cache was built with), the block size it was packed for, every
    corpus's text where ``--input_dir`` puts it (else where its manifests record it)."""
    m = read_manifest(next(iter(dirs.values())))
    cfg = CacheArguments(tokenizer_name_or_path=args.tokenizer or m.tokenizer.name_or_path,
                         tokenizer_type=m.tokenizer.type, datasets_cache_dir=args.path,
                         max_seq_length=m.parameters.max_seq_length, datasets_type=m.parameters.datasets_type,
                         add_space_token=bool(m.tokenizer.settings.get("add_space_token")))
    names = read_corpora(args.path)
    if names is None:
        return rebuild_command(replace(cfg, train_dir=given.get(None)))
    named = {n: d for n, d in given.items() if n}
    refuse_shared_corpora(corpus_text(args.path, names, named), {}, m.parameters.ext, m.parameters.recursive)
    return named_rebuild_command(cfg, names, {"train_dir": named})


if __name__ == "__main__":
    sys.exit(main())
