#!/usr/bin/env python
"""Input formats side by side: the same text as .txt, Parquet, JSON Lines and compressed files.

* throughput: ``--mb`` MB of English+Thai text (bench/preprocess_bench.py's
  corpus, 8..16 shards) stored in every format of ``--formats``, each line of
  text one JSON record / Parquet row (``{"id", "text", "url"}``: the other
  fields must not be read); ``python -m preprocess`` (a subprocess, start-up
  included) with ``--workers`` workers and a WordPiece tokenizer trained here
  on a sample, into a fresh cache each run; formats interleaved, the best of
  ``--repeats`` per format. Every format's cache is checked against the
  .txt one: the same token stream, the same line lengths (and the same
  blocks where the files were grouped into the same pieces);
* memory: peak memory of the whole preprocess process tree (sampled every
  50 ms: PSS and the sum of RSS) on ONE .jsonl.zst file of each ``--rss_mb``
  size, ``--workers`` workers: a compressed file is one task that streams, so
  the peak should not grow with the file.

Corpus and tokenizer are cached under ``--out`` (default ``bench_out/``,
gitignored); the format files and caches live in a temporary dir under it,
deleted at the end. Prints markdown tables to stdout, progress to stderr.
``--smoke`` runs it tiny, in seconds.
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # this process trains a tokenizer, then starts subprocesses

import argparse
import gzip
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.preprocess_bench import (  # noqa: E402
    MB,
    MIB,
    NOISE_CORES,
    SAMPLE_MB,
    WORDPIECE_VOCAB,
    Corpus,
    Stopwatch,
    head_bytes,
    log,
    make_corpus,
    wait_for_quiet,
    write_file,
)
from bench.tree_rss import TreeRss  # noqa: E402

FORMATS = ("txt", "parquet", "jsonl", "jsonl.zst", "txt.gz", "txt.zst", "jsonl.gz")
TARGETS = {"parquet": 0.9, "jsonl": 0.9}  # throughput vs .txt; every compressed format: COMPRESSED_TARGET
COMPRESSED_TARGET = 0.8
GZIP_LEVEL = 6  # gzip's usual default (python's is 9: slow to write, no faster to read)
ROW_GROUP_ROWS = 10_000  # Parquet rows per row group (a few MB of text, as datasets writes them)


# --------------------------------------------------------------------------- writing the formats


def records(lines: list[str], first_id: int) -> Iterator[dict]:
    for n, line in enumerate(lines, first_id):
        yield {"id": n, "text": line, "url": f"https://example.com/doc/{n}"}


def jsonl_bytes(lines: list[str], first_id: int) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records(lines, first_id)).encode("utf-8")


def compress(data: bytes, codec: str) -> bytes:
    if codec == "gz":
        return gzip.compress(data, compresslevel=GZIP_LEVEL)
    import pyarrow as pa

    return pa.compress(data, codec="zstd", asbytes=True)


def shard_lines(data: bytes) -> list[str]:
    """The lines of a .txt shard (it ends in a newline): one record or row each."""
    text = data.decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def write_format(data: bytes, path: Path, ext: str, first_id: int) -> int:
    """``data`` (one .txt shard) as ``path`` in format ``ext``; returns how many lines it holds."""
    base, _, codec = ext.partition(".")
    lines = shard_lines(data)
    if base == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = list(records(lines, first_id))
        table = pa.table({k: [r[k] for r in rows] for k in ("id", "text", "url")})
        pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
        return len(lines)
    payload = data if base == "txt" else jsonl_bytes(lines, first_id)
    path.write_bytes(compress(payload, codec) if codec else payload)
    return len(lines)


def write_formats(corpus: Corpus, root: Path, formats: list[str]) -> dict[str, Path]:
    """One dir per format, the corpus's shards in it under the same names."""
    dirs = {}
    for ext in formats:
        d = root / ext.replace(".", "_")
        d.mkdir(parents=True)
        t = time.perf_counter()
        first_id = 0
        for shard in corpus.shards:
            first_id += write_format(shard.read_bytes(), d / f"{shard.stem}.{ext}", ext, first_id)
        log(f"wrote .{ext}: {len(corpus.shards)} files, {disk_bytes(d) / MB:.1f} MB in {time.perf_counter() - t:.1f} s")
        dirs[ext] = d
    return dirs


def disk_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file())


def one_zst_file(corpus: Corpus, path: Path, mb: float) -> int:
    """ONE .jsonl.zst file (one zstd frame, as ``zstd`` writes) of ``mb`` MB of text: the corpus's lines,
    over again as often as needed. Returns the text bytes it holds."""
    target, size, parts, first_id = int(mb * MB), 0, [], 0
    while size < target:
        for shard in corpus.shards:
            lines = shard_lines(shard.read_bytes())
            take = []
            for line in lines:
                take.append(line)
                size += len(line.encode("utf-8")) + 1
                if size >= target:
                    break
            parts.append(jsonl_bytes(take, first_id))
            first_id += len(take)
            if size >= target:
                break
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(parts)
    del parts
    path.write_bytes(compress(data, "zst"))
    return size


# --------------------------------------------------------------------------- the tokenizer


def wordpiece(out: Path, corpus: Corpus) -> Path:
    """A WordPiece fast tokenizer trained on a sample of every shard; reused if trained on this corpus before."""
    d = out / "formats_tokenizer"
    params = {"corpus": str(corpus.dir), "bytes": corpus.bytes, "sample_mb": SAMPLE_MB, "vocab": WORDPIECE_VOCAB}
    stamp = d / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return d / "wordpiece"
    shutil.rmtree(d, ignore_errors=True)
    per_shard = SAMPLE_MB * MB // len(corpus.shards)
    sample = write_file(d / "sample.txt", b"".join(head_bytes([p], per_shard) for p in corpus.shards))
    t = time.perf_counter()
    # in a child (bench/preprocess_bench.py's train_wordpiece): the trainer's threads stay out of this process
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]); "
            "from bench.preprocess_bench import train_wordpiece; train_wordpiece(Path(sys.argv[1]), Path(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, str(sample), str(d / "wordpiece"), str(REPO)], check=True, cwd=REPO)
    log(f"tokenizer: WordPiece trained on {sample.stat().st_size / MB:.1f} MB in {time.perf_counter() - t:.1f} s")
    sample.unlink()
    stamp.write_text(json.dumps(params))
    return d / "wordpiece"


# --------------------------------------------------------------------------- running preprocess


TASK_SIZE_MB = 1.0  # set from --task_size_mb in main()


def command(tok: Path, text: Path, cache: Path, ext: str, workers: int, seq_len: int) -> list[str]:
    return [sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(tok), "--train_dir", str(text),
            "--datasets_cache_dir", str(cache), "--ext", ext, "--num_workers", str(workers),
            "--max_seq_length", str(seq_len), "--task_size_mb", f"{TASK_SIZE_MB:g}"]


@dataclass
class Run:
    seconds: float
    others: float  # cores other processes kept busy meanwhile
    summary: str
    pss: int = 0
    rss_sum: int = 0
    rss_one: int = 0


def run_preprocess(cmd: list[str], cache: Path, logs: Path, name: str, rss: bool = False) -> Run:
    """``cmd`` into a fresh ``cache``; stderr (progress bars, warnings) to ``logs/name.log``."""
    shutil.rmtree(cache, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "w") as err, Stopwatch() as sw:
        p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        sampler = TreeRss(p.pid) if rss else None
        if sampler:
            with sampler:
                out, _ = p.communicate()
        else:
            out, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {p.returncode}:\n{log_path.read_text()[-3000:]}")
    run = Run(sw.time.seconds, sw.time.others, out.strip().splitlines()[-1] if out.strip() else "")
    if sampler:
        run.pss, run.rss_sum, run.rss_one = sampler.peak_pss, sampler.peak_sum, sampler.peak_one
    return run


def calm_run(cmd: list[str], cache: Path, logs: Path, name: str, quiet_s: float, tries: int,
             rss: bool = False) -> Run:
    """``run_preprocess`` after waiting up to ``quiet_s`` for an idle machine; again while other processes
    kept more than NOISE_CORES cores busy meanwhile (the machine may be shared), at most ``tries`` runs;
    the calmest."""
    runs = []
    for _ in range(tries):
        if quiet_s > 0:
            wait_for_quiet(quiet_s)
        runs.append(run_preprocess(cmd, cache, logs, name, rss))
        if runs[-1].others <= NOISE_CORES:
            break
        log(f"{name}: other processes used {runs[-1].others:.2f} cores meanwhile; measuring again")
    return min(runs, key=lambda r: r.others)  # every try writes the same cache


@dataclass
class Content:
    """What a cache holds, as digests: the comparison with .txt."""

    tokens: int
    lines: int
    bad_records: int
    pieces: int
    grouping: tuple[int, ...]  # shards per piece
    stream: str  # digest of every piece's tokens, concatenated in manifest order
    line_lengths: str  # digest of every line's length in tokens, in order
    blocks: str  # digest of every piece's blocks (depend on the grouping)


def content(cache: Path) -> Content:
    split = cache / "train"
    m = json.loads((split / "manifest.json").read_text())
    stream, lengths, blocks = hashlib.blake2b(), hashlib.blake2b(), hashlib.blake2b()
    for p in m["pieces"]:
        tokens = np.load(split / p["files"]["tokens"]["path"], mmap_mode="r")
        stream.update(np.ascontiguousarray(tokens).astype("<u4").tobytes())
        lines = np.load(split / p["files"]["lines"]["path"], mmap_mode="r")
        lengths.update(np.diff(lines).astype("<i8").tobytes())
        blocks.update(np.load(split / p["blocks"]["file"]["path"]).astype("<i8").tobytes())
    t = m["totals"]
    return Content(t["tokens"], t["lines"], t.get("bad_records", 0), len(m["pieces"]),
                   tuple(p["shards"] for p in m["pieces"]), stream.hexdigest(), lengths.hexdigest(),
                   blocks.hexdigest())


def same_as(c: Content, ref: Content) -> tuple[bool, str]:
    """(identical token arrays, the blocks cell)."""
    ok = (c.tokens, c.lines, c.stream, c.line_lengths) == (ref.tokens, ref.lines, ref.stream, ref.line_lengths)
    if c.grouping != ref.grouping:
        blocks = f"n/a ({c.pieces} pieces vs {ref.pieces})"
    else:
        blocks = "yes" if c.blocks == ref.blocks else "NO"
    return ok and c.bad_records == 0, blocks


# --------------------------------------------------------------------------- main


def target_of(ext: str) -> float:
    return COMPRESSED_TARGET if "." in ext else TARGETS.get(ext, 1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=50, help="MB of text of the throughput table (default 50)")
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"--ext values, .txt first (default {','.join(FORMATS)})")
    ap.add_argument("--repeats", type=int, default=2, help="runs per format, interleaved; the best counts (default 2)")
    ap.add_argument("--rss_mb", type=float, nargs="*", default=[50, 200],
                    help="MB of text of the single .jsonl.zst files of the memory table (default 50 200; none: no table)")
    ap.add_argument("--workers", type=int, default=2, help="--num_workers (default 2)")
    ap.add_argument("--task_size_mb", type=float, default=1.0,
                    help="--task_size_mb (default 1: shards of ~4 MB are cut into several tasks in every format that "
                    "can be cut, so no format's ratio hangs on how one task per shard happens to fall on 2 workers)")
    ap.add_argument("--max_seq_length", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quiet_s", type=float, default=30,
                    help="before each run, wait up to this long for other processes to calm down (default 30)")
    ap.add_argument("--tries", type=int, default=3,
                    help="runs of one measurement while other processes disturb it; the calmest (default 3)")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out", help="corpus/tokenizer cache and work dir")
    ap.add_argument("--smoke", action="store_true", help="2 MB, one repeat, 1 and 4 MB files: proves the script")
    a = ap.parse_args(argv)
    global TASK_SIZE_MB
    TASK_SIZE_MB = a.task_size_mb
    if a.smoke:
        a.mb, a.repeats, a.rss_mb, a.quiet_s, a.tries = 2, 1, [1, 4], 0, 1
    formats = [f.strip().lstrip(".") for f in a.formats.split(",") if f.strip()]
    if formats[0] != "txt":
        formats = ["txt", *(f for f in formats if f != "txt")]
    t_start = time.perf_counter()
    a.out.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(a.out, a.mb, a.seed)
    tok = wordpiece(a.out, corpus)
    root = Path(tempfile.mkdtemp(prefix="formats_", dir=a.out))
    logs = a.out / "logs" / "formats"
    try:
        dirs = write_formats(corpus, root / "text", formats)
        on_disk = {ext: disk_bytes(d) for ext, d in dirs.items()}
        cache = root / "cache"
        best: dict[str, Run] = {}
        runs: dict[str, list[float]] = {f: [] for f in formats}
        contents: dict[str, Content] = {}
        commands = {f: command(tok, dirs[f], cache, f, a.workers, a.max_seq_length) for f in formats}
        for rep in range(a.repeats):
            for ext in formats:  # interleaved: a slow minute of the machine hits every format alike
                r = calm_run(commands[ext], cache, logs, f"{ext}_{rep}", a.quiet_s, a.tries)
                log(f".{ext} run {rep + 1}: {r.seconds:.1f} s ({r.summary})")
                runs[ext].append(r.seconds)
                if ext not in best or r.seconds < best[ext].seconds:
                    best[ext] = r
                if ext not in contents:
                    contents[ext] = content(cache)
        ref = contents["txt"]
        identical = {ext: same_as(contents[ext], ref) for ext in formats}

        rss_rows = []
        for mb in a.rss_mb:
            d = root / f"one_{mb:g}mb"
            t = time.perf_counter()
            text_bytes = one_zst_file(corpus, d / f"one_{mb:g}mb.jsonl.zst", mb)
            log(f"wrote one .jsonl.zst of {text_bytes / MB:.1f} MB of text in {time.perf_counter() - t:.1f} s")
            cmd = command(tok, d, cache, "jsonl.zst", a.workers, a.max_seq_length)
            r = calm_run(cmd, cache, logs, f"rss_{mb:g}mb", a.quiet_s, a.tries, rss=True)
            log(f"one .jsonl.zst, {mb:g} MB: {r.seconds:.1f} s, peak PSS {r.pss / MIB:.0f} MiB")
            rss_rows.append((mb, text_bytes, disk_bytes(d), r, content(cache).tokens))
            shutil.rmtree(d)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    shown = [shlex.join(["python", "bench/formats_bench.py", *(sys.argv[1:] if argv is None else argv)])]
    example = command(Path("<tok>"), Path("<dir>"), Path("<cache>"), "<ext>", a.workers, a.max_seq_length)
    out = [f"# Input formats: {corpus.mb:.1f} MB of text, {a.workers} workers, WordPiece, "
           f"{os.cpu_count()} cores", "",
           f"- bench: `{shown[0]}`",
           f"- each run: `{shlex.join(['python', *example[1:]])}` (a subprocess, start-up included), "
           "into a fresh cache",
           f"- text: {len(corpus.shards)} shards of English+Thai lines (bench/preprocess_bench.py, Thai words: "
           f"{corpus.thai_source}); JSON Lines/Parquet: one record/row per line, "
           '`{"id", "text", "url"}` (UTF-8 JSON, Parquet snappy, '
           f"{ROW_GROUP_ROWS:,} rows a row group); .gz level {GZIP_LEVEL}, .zst pyarrow's default level; "
           f"best of {a.repeats} interleaved runs; \"other cores\": CPU other processes used meanwhile (a run "
           f"disturbed by more than {NOISE_CORES} cores is taken again, up to {a.tries} tries)", "",
           "| format | files | bytes on disk | wall s | MB/s of text | vs .txt | target | pieces | other cores | runs (s) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    base = corpus.mb / best["txt"].seconds
    for ext in formats:
        r = best[ext]
        speed = corpus.mb / r.seconds
        ratio = speed / base
        goal = target_of(ext)
        verdict = "" if ext == "txt" else f"≥ {goal:.1f}x {'ok' if ratio >= goal else 'MISSED'}"
        out.append(f"| .{ext} | {len(corpus.shards)} | {on_disk[ext]:,} | {r.seconds:.2f} | {speed:.2f} | "
                   f"{ratio:.2f}x | {verdict} | {contents[ext].pieces} | {r.others:.2f} | "
                   f"{', '.join(f'{s:.1f}' for s in runs[ext])} |")
    out += ["", "| format | tokens | lines | same token stream and line lengths as .txt | same blocks as .txt |",
            "|---|---|---|---|---|"]
    for ext in formats:
        c = contents[ext]
        ok, blocks = identical[ext]
        out.append(f"| .{ext} | {c.tokens:,} | {c.lines:,} | {'yes' if ok else 'NO'} | {blocks} |")
    all_same = all(ok for ok, _ in identical.values())
    out += ["", f"- identical token arrays to .txt in every format: {'yes' if all_same else 'no'} "
            "(manifest totals, the concatenated tokens of all pieces, every line's length; blocks can differ "
            "only where files were grouped into other pieces, as files of other sizes are)"]

    if rss_rows:
        out += ["", f"## Memory: ONE .jsonl.zst file (one task, one zstd frame), {a.workers} workers", "",
                "| text in the file | bytes on disk | tokens | wall s | MB/s of text | peak PSS, tree (MiB) | "
                "peak sum of RSS, tree (MiB) | largest process RSS (MiB) | other cores |",
                "|---|---|---|---|---|---|---|---|---|"]
        for _, text_bytes, on_disk, r, tokens in rss_rows:
            out.append(f"| {text_bytes / MB:.1f} MB | {on_disk:,} | {tokens:,} | {r.seconds:.1f} | "
                       f"{text_bytes / MB / r.seconds:.2f} | {r.pss / MIB:,.0f} | {r.rss_sum / MIB:,.0f} | "
                       f"{r.rss_one / MIB:,.0f} | {r.others:.2f} |")
    if len(rss_rows) >= 2:
        (m0, b0, _, r0, _), (m1, b1, _, r1, _) = rss_rows[0], rss_rows[-1]
        grow = (r1.rss_one - r0.rss_one) / MIB / ((b1 - b0) / MB)
        out += ["", f"- {m1:g} MB vs {m0:g} MB: peak PSS {r1.pss / r0.pss:.2f}x, peak sum of RSS "
                f"{r1.rss_sum / r0.rss_sum:.2f}x, largest process {r1.rss_one / r0.rss_one:.2f}x "
                f"({grow:+.2f} MiB per MB of text) (target: flat, about 1.0x); sampled every 50 ms "
                "(PSS every 250 ms); one file is one task: one worker works, the other waits"]
    out += [f"- bench wall time: {time.perf_counter() - t_start:.0f} s; machine: {os.cpu_count()} cores"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
