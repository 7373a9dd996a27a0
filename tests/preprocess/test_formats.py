"""Parquet, JSON Lines and compressed text: the same text gives the same arrays as .txt; bad records are counted."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.corpus import make_lines
from tests.preprocess.helpers import arrays, base_args, manifest, run_cli

FORMATS = ["txt", "txt.gz", "txt.zst", "jsonl", "jsonl.gz", "jsonl.zst", "json", "parquet"]


def documents(seed: int = 0, n: int = 300) -> list[str]:
    """Documents of 1-3 lines, some with blank lines, CRLF and spaces to clean; one line far longer
    than a task (cut into open ranges in .txt), so every cutting rule is crossed."""
    rng = random.Random(seed)
    lines = make_lines(n, seed=seed)
    docs, i = [], 0
    while i < len(lines):
        k = rng.randint(1, 3)
        docs.append(rng.choice(["\n", "\r\n", "\n\n  "]).join(lines[i : i + k]) + rng.choice(["", " ", "\n"]))
        i += k
    docs.insert(len(docs) // 2, " ".join(make_lines(400, seed=seed + 1, max_words=40)))  # ~ 60 KB, one line
    return docs


def compress(data: bytes, codec: str | None) -> bytes:
    if codec == "gz":
        return gzip.compress(data[: len(data) // 3]) + gzip.compress(data[len(data) // 3 :])  # two members
    if codec == "zst":
        return pa.compress(data, codec="zstd", asbytes=True)
    return data


def write_docs(path: Path, docs: list[str], ext: str) -> Path:
    """``docs`` in the format ``ext`` names; JSON records carry other fields the reader must ignore."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base, _, codec = ext.partition(".")
    if base == "parquet":
        table = pa.table({"id": list(range(len(docs))), "text": docs, "url": [f"u{i}" for i in range(len(docs))]})
        pq.write_table(table, path, row_group_size=37)
        return path
    if base == "txt":
        data = "\n".join(docs).encode()
    else:
        data = "".join(json.dumps({"id": i, "text": d, "meta": {"n": i}}, ensure_ascii=i % 2 == 0) + "\n"
                       for i, d in enumerate(docs)).encode()
    path.write_bytes(compress(data, codec or None))
    return path


@pytest.mark.parametrize("ext", FORMATS[1:])
def test_every_format_gives_the_arrays_of_the_same_text_as_txt(capsys, tmp_path, wordpiece_dir, ext):
    docs = documents()
    small = ("--task_size_mb", "0.01")  # 10 KB: several tasks, row-group runs and chunks per file
    write_docs(tmp_path / "txt" / "corpus.txt", docs, "txt")
    write_docs(tmp_path / ext / f"corpus.{ext}", docs, ext)
    assert run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "txt", tmp_path / "c_txt", *small))[0] == 0
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / ext, tmp_path / "c", "--ext", ext, *small))
    assert rc == 0, err
    want, got = arrays(tmp_path / "c_txt"), arrays(tmp_path / "c")
    assert list(got.values()) == list(want.values())
    m, m_txt = manifest(tmp_path / "c"), manifest(tmp_path / "c_txt")
    assert m["totals"]["lines"] == m_txt["totals"]["lines"] > len(docs)
    assert m["totals"]["bad_records"] == 0 and "warning" not in err
    # a rerun reads nothing again; the key depends on how the bytes are read
    rc, out, _ = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / ext, tmp_path / "c", "--ext", ext, *small))
    assert rc == 0 and "cache is fresh" in out


def _jsonl(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def test_bad_json_lines_records_are_counted_named_and_refused_with_strict(capsys, tmp_path, wordpiece_dir):
    from preprocess.inspect_cache import main as inspect

    good = [json.dumps({"text": x}) for x in make_lines(20)]
    _jsonl(tmp_path / "t" / "a.jsonl", [*good[:5], "{not json", json.dumps({"body": "x"}), *good[5:10],
                                        json.dumps({"text": None}), json.dumps({"text": 7}), json.dumps([1, 2])])
    _jsonl(tmp_path / "t" / "b.jsonl", good[10:])
    args = base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", "jsonl")
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0, err
    m = manifest(tmp_path / "c")
    assert [s["bad_records"] for s in m["shards"]] == [5, 0] and m["totals"]["bad_records"] == 5
    assert m["totals"]["lines"] == 20  # every good record kept
    assert "5 records without usable text" in err
    assert "a.jsonl line 6: not valid JSON" in err and "a.jsonl line 7: no 'text' field" in err
    assert inspect(["show", str(tmp_path / "c")]) == 0
    assert "5 bad records skipped" in capsys.readouterr().out
    # --strict: the same corpus is an error, on a fresh cache and on the one that holds those pieces
    for cache, says in (("strict", "a.jsonl line 6: not valid JSON"), ("c", "5 records without usable text")):
        rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / cache, "--ext", "jsonl",
                                                  "--strict"))
        assert rc == 2 and says in err and "a.jsonl" in err and "--strict" in err, err
    assert not (tmp_path / "strict" / "train" / "manifest.json").exists()


def _decodable(data: bytes, ext: str) -> bytes:
    """What a decoder that keeps every byte it can decode gets from damaged ``data`` (zlib and zstandard)."""
    import zlib

    import zstandard

    out = b""
    while data:
        d = zlib.decompressobj(31) if ext.endswith("gz") else zstandard.ZstdDecompressor().decompressobj()
        try:
            out += d.decompress(data)
        except (zlib.error, zstandard.ZstdError):
            break
        data = d.unused_data if d.eof else b""
    return out


@pytest.mark.parametrize("ext", ["txt.gz", "jsonl.zst", "txt.zst"])
@pytest.mark.parametrize("damage", ["truncated", "trailing garbage", "small and truncated"])
def test_a_damaged_compressed_shard_keeps_every_decodable_line_and_counts_one_bad_record(capsys, tmp_path,
                                                                                        wordpiece_dir, ext, damage):
    docs = make_lines(30 if damage.startswith("small") else 3000, seed=3)
    path = write_docs(tmp_path / "t" / f"a.{ext}", docs, ext)
    data = path.read_bytes()
    path.write_bytes(data + b"JUNK" * 10 if damage == "trailing garbage" else data[: len(data) * 2 // 3])
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", ext))
    assert rc == 0, err
    m = manifest(tmp_path / "c")
    complete = _decodable(path.read_bytes(), ext).count(b"\n")  # whole lines (records) before the damage
    cut_record = 1 if ext.startswith("jsonl") and damage != "trailing garbage" else 0  # a half record is bad too
    assert 1 <= m["totals"]["bad_records"] <= 1 + cut_record and complete <= m["totals"]["lines"] <= complete + 1
    assert "what came before was kept" in err and ("truncated" in err or "not gzip data" in err or "zstd" in err)
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "s", "--ext", ext, "--strict"))
    assert rc == 2 and "--strict" in err


def test_an_empty_compressed_file_is_an_empty_shard(capsys, tmp_path, wordpiece_dir):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt.gz").write_bytes(b"")
    (tmp_path / "t" / "b.txt.gz").write_bytes(gzip.compress(b"one line\n"))
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", "txt.gz"))
    assert rc == 0, err
    assert [s["lines"] for s in manifest(tmp_path / "c")["shards"]] == [0, 1]


def test_parquet_without_the_text_column(capsys, tmp_path, wordpiece_dir):
    write_docs(tmp_path / "t" / "a.parquet", make_lines(50), "parquet")
    pq.write_table(pa.table({"content": make_lines(30), "id": list(range(30))}), tmp_path / "t" / "b.parquet")
    pq.write_table(pa.table({"text": ["one", None, "three"]}), tmp_path / "t" / "c.parquet")
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", "parquet"))
    assert rc == 0, err
    m = manifest(tmp_path / "c")
    assert [s["bad_records"] for s in m["shards"]] == [0, 30, 1]
    assert "b.parquet rows 0-29: no column 'text' (columns: content, id)" in err and "c.parquet row 1" in err
    # a column no file has is a typo: an error before any work, naming the columns there are
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "d", "--ext", "parquet",
                                              "--text_column", "txt"))
    assert rc == 2 and "--text_column" in err and "columns: id, text, url" in err
    assert not (tmp_path / "d" / "train").exists()


@pytest.mark.parametrize("name, data, says", [
    ("a.txt", gzip.compress(b"hello world\n" * 50), "gzip-compressed, not text"),
    ("a.txt", pa.compress(b"hello world\n" * 50, codec="zstd", asbytes=True), "--ext txt.zst"),
    ("a.jsonl", gzip.compress(b'{"text": "x"}\n'), "--ext jsonl.gz"),
    ("a.txt.gz", b"hello world\n", "not gzip-compressed, as --ext says. If it is not compressed, name it *.txt"),
    ("a.jsonl", b"[1, 2]\n[3]\n", "its first record is a JSON list"),
    ("a.jsonl", b'[\n {"text": "x"}\n]\n', "pretty-printed JSON"),
    ("a.parquet", b"PAR1 this is no parquet file", "cannot be opened as Parquet"),
    ("a.jsonl.zst", b"\x28\xb5\x2f\xfd garbage after the magic", "cannot be decompressed"),
])
def test_a_shard_that_is_not_what_ext_says_is_one_error_before_any_work(capsys, tmp_path, wordpiece_dir, name,
                                                                       data, says):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / name).write_bytes(data)
    ext = name.split(".", 1)[1]
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", ext))
    assert rc == 2 and says in err and name in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "c" / "train").exists()


def test_a_parquet_file_named_txt_points_at_ext_parquet(capsys, tmp_path, wordpiece_dir):
    write_docs(tmp_path / "t" / "a.parquet", make_lines(5), "parquet")
    (tmp_path / "t" / "a.parquet").rename(tmp_path / "t" / "a.txt")
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c"))
    assert rc == 2 and "a Parquet file" in err and "--ext parquet" in err


@pytest.mark.parametrize("name, ext, reads", [("a.jsonl.zst", "zst", "jsonl.zst"), ("a.jsonl.gz", "gz", "jsonl.gz"),
                                              ("a.json.zst", "zst", "json.zst"), ("a.ndjson.gz", "txt,gz", "ndjson.gz"),
                                              ("a.JSONL.zst", "zst", "JSONL.zst")])
def test_json_lines_matched_only_by_a_bare_codec_ext_is_refused_naming_the_ext_that_reads_it(capsys, tmp_path,
                                                                                           wordpiece_dir, name, ext,
                                                                                           reads):
    """--ext zst reads *.zst as compressed text: a .jsonl.zst would be tokenized as raw JSON ({ " text " : ...),
    --text_column unused, so it is refused as a gzip named .txt is; compressed text (.txt.zst) is still read."""
    codec = name.rsplit(".", 1)[1].lower()
    write_docs(tmp_path / "t" / name, make_lines(20), f"jsonl.{codec}")
    write_docs(tmp_path / "t" / f"b.txt.{codec}", make_lines(20, seed=1), f"txt.{codec}")
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", ext))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:"), err
    assert name in err and "JSON Lines" in err and f"--ext {reads}" in err, err
    assert not (tmp_path / "c" / "train").exists()
    (tmp_path / "t" / name).unlink()
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", ext))
    assert rc == 0 and manifest(tmp_path / "c")["shards"][0]["lines"] == 20, err


def test_awkward_but_valid_records_are_read(capsys, tmp_path, wordpiece_dir):
    """A lone surrogate escape, a byte-order mark, a header record without text, dictionary-encoded and
    int Parquet columns: read, counted or named, never a traceback."""
    t = tmp_path / "t"
    t.mkdir()
    (t / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"meta": 1}\n{"text": "lone \\ud800 surrogate"}\n{"text": "ok"}\n')
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, t, tmp_path / "c", "--ext", "jsonl"))
    assert rc == 0, err
    m = manifest(tmp_path / "c")
    assert m["totals"]["lines"] == 2 and m["totals"]["bad_records"] == 1  # the header record, by its line
    assert "a.jsonl line 1: no 'text' field" in err and "Traceback" not in err
    p = tmp_path / "p"
    p.mkdir()
    pq.write_table(pa.table({"text": pa.array(make_lines(20)).dictionary_encode()}), p / "a.parquet")
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, p, tmp_path / "d", "--ext", "parquet"))
    assert rc == 0 and manifest(tmp_path / "d")["totals"]["lines"] == 20, err
    pq.write_table(pa.table({"text": list(range(5))}), p / "a.parquet")
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, p, tmp_path / "e", "--ext", "parquet"))
    assert rc == 2 and "column 'text' is int64, not a string" in err


def test_a_task_read_in_chunks_keeps_no_chunk_arrays_alive(tmp_path, wordpiece_dir):
    """A worker's memory is bounded by a chunk: the parts of a streamed task hold no view of a chunk's
    arrays (a [:0] slice kept them all, +0.22 MiB a MB of text in a 200 MB .jsonl.zst)."""
    from common.tokenizer import load_tokenizer
    from preprocess.encode import encode_task
    from preprocess.encoder import set_worker_state
    from preprocess.formats import format_of
    from preprocess.scan import scan_input
    from preprocess.spill import remove_spill
    from preprocess.tasks import Reading, tasks_of

    path = write_docs(tmp_path / "a.jsonl.zst", documents(n=30_000), "jsonl.zst")  # ~4 MB: 1 MB reads
    fmt = format_of("jsonl.zst")
    set_worker_state(load_tokenizer(str(wordpiece_dir), "auto", {"add_space_token": False}), "tokenizers")
    (task,) = tasks_of(0, path, scan_input(path, fmt, 10_000, "text"), fmt,
                       Reading(column="text", task_bytes=10_000, select=None, spill_dir=str(tmp_path)))
    r = encode_task(task)
    try:
        assert r.parts and len(r.parts) > 2
        assert all(p.result.tokens.base is None and p.result.line_lengths.base is None for p in r.parts)
    finally:
        remove_spill(r)


MIXED = {"a": "txt", "b": "jsonl.zst", "c": "parquet", "d": "txt"}


def test_one_split_mixes_formats_each_file_read_by_its_own_extension(capsys, tmp_path, wordpiece_dir):
    """--ext txt,jsonl.zst,parquet: the arrays of the same documents as .txt files named in the same order;
    the manifest records the list; a rerun is a no-op; an edit re-tokenizes only its own piece."""
    from tests.preprocess.helpers import token_file_stats

    small = ("--task_size_mb", "0.01")  # 10 KB: every file (~65 KB of text) is a piece of its own, in tasks
    for k, (stem, ext) in enumerate(MIXED.items()):
        write_docs(tmp_path / "mixed" / f"{stem}.{ext}", documents(seed=k, n=60), ext)
        write_docs(tmp_path / "txt" / f"{stem}.txt", documents(seed=k, n=60), "txt")
    (tmp_path / "mixed" / "notes.md").write_text("not a shard\n")
    (tmp_path / "mixed" / "e.jsonl").write_text('{"text": "not listed"}\n')

    def mixed(ext: str = "txt,jsonl.zst,parquet") -> tuple[int, str, str]:
        return run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "mixed", tmp_path / "c", "--ext", ext, *small))

    assert run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "txt", tmp_path / "c_txt", *small))[0] == 0
    rc, out, err = mixed()
    assert rc == 0, err
    m = manifest(tmp_path / "c")
    assert [s["path"] for s in m["shards"]] == ["a.txt", "b.jsonl.zst", "c.parquet", "d.txt"]
    assert m["parameters"]["ext"] == "jsonl.zst,parquet,txt" and m["parameters"]["text_column"] == "text"
    assert [p["shards"] for p in m["pieces"]] == [1, 1, 1, 1]  # so the arrays compare piece by piece
    assert list(arrays(tmp_path / "c").values()) == list(arrays(tmp_path / "c_txt").values())
    assert m["totals"]["bad_records"] == 0 and "warning" not in err
    # a rerun, the list in another order and spelling: nothing to do
    for ext in ("txt,jsonl.zst,parquet", "*.parquet, .txt,jsonl.zst"):
        rc, out, err = mixed(ext)
        assert rc == 0 and "cache is fresh" in out, err
    # one file edited: only its piece is tokenized again
    before = token_file_stats(tmp_path / "c")
    write_docs(tmp_path / "mixed" / "c.parquet", documents(seed=9, n=60), "parquet")
    rc, out, err = mixed()
    assert rc == 0 and "3 shards reused, 1 tokenized" in out, err
    after = token_file_stats(tmp_path / "c")
    assert [s for s in before if before[s] != after[s]] == ["c.parquet"]


def test_an_extension_listed_inside_another_reads_each_file_by_the_longest(capsys, tmp_path, wordpiece_dir):
    """--ext zst,jsonl.zst: a.jsonl.zst is JSON Lines (once), b.txt.zst compressed text; --ext jsonl,jsonl.zst
    lists a.jsonl.zst once."""
    from tests.preprocess.helpers import lines_of

    for k, (stem, ext) in enumerate({"a": "jsonl.zst", "b": "txt.zst", "c": "jsonl"}.items()):
        write_docs(tmp_path / "mixed" / f"{stem}.{ext}", documents(seed=k, n=40), ext)
        write_docs(tmp_path / "txt" / f"{stem}.txt", documents(seed=k, n=40), "txt")
    assert run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "txt", tmp_path / "c_txt"))[0] == 0
    want = [x.tolist() for x in lines_of(tmp_path / "c_txt")]
    n_a_b = sum(s["lines"] for s in manifest(tmp_path / "c_txt")["shards"][:2])
    mixed = tmp_path / "mixed"
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, mixed, tmp_path / "c", "--ext", "zst,jsonl.zst"))
    assert rc == 0, err
    assert [s["path"] for s in manifest(tmp_path / "c")["shards"]] == ["a.jsonl.zst", "b.txt.zst"]
    assert [x.tolist() for x in lines_of(tmp_path / "c")] == want[:n_a_b]
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, mixed, tmp_path / "d", "--ext", "jsonl,jsonl.zst"))
    assert rc == 0, err
    assert [s["path"] for s in manifest(tmp_path / "d")["shards"]] == ["a.jsonl.zst", "c.jsonl"]


@pytest.mark.parametrize("ext, name, data, says", [
    ("txt,parquet.gz", None, None, "--ext parquet.gz: Parquet compresses inside the file"),
    ("txt,parquet", "b.parquet", b"PAR1 this is no parquet file", "b.parquet: cannot be opened as Parquet"),
    ("txt,parquet", "b.txt", gzip.compress(b"hello world\n" * 50), "b.txt: gzip-compressed, not text"),
    ("txt,jsonl", "b.jsonl", b"[1, 2]\n", "b.jsonl: not JSON Lines of objects"),
])
def test_a_list_of_extensions_keeps_every_check_one_error_line(capsys, tmp_path, wordpiece_dir, ext, name, data, says):
    write_docs(tmp_path / "t" / "a.txt", make_lines(20), "txt")
    if name:
        (tmp_path / "t" / name).write_bytes(data)
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "t", tmp_path / "c", "--ext", ext))
    assert rc == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")
    assert not (tmp_path / "c" / "train").exists()


def test_text_column_applies_to_the_records_of_a_list(capsys, tmp_path, wordpiece_dir):
    t = tmp_path / "t"
    write_docs(t / "a.txt", make_lines(10, seed=1), "txt")
    _jsonl(t / "b.jsonl", [json.dumps({"body": x}) for x in make_lines(10, seed=2)])
    pq.write_table(pa.table({"body": make_lines(10, seed=3)}), t / "c.parquet")
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, t, tmp_path / "c", "--ext", "txt,jsonl,parquet"))
    assert rc == 2 and "no *.{jsonl,parquet} file has its text in 'text'" in err and "--text_column" in err, err
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, t, tmp_path / "c", "--ext", "txt,jsonl,parquet",
                                              "--text_column", "body"))
    assert rc == 0, err
    m = manifest(tmp_path / "c")
    assert [s["lines"] for s in m["shards"]] == [10, 10, 10] and m["parameters"]["text_column"] == "body"


def test_no_shard_names_the_extensions_there_and_suggests_recursive_only_where_it_reads_them(capsys, tmp_path,
                                                                                            wordpiece_dir):
    p = tmp_path / "p"
    for name in ("a.parquet", "b.parquet", "sub/c.parquet"):
        write_docs(p / name, make_lines(5), "parquet")
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, p, tmp_path / "c"))
    assert rc == 2 and "no *.txt files (it has 2 *.parquet files: to read them, pass --ext parquet)" in err, err
    assert "--recursive" not in err
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, p, tmp_path / "c", "--recursive"))
    assert rc == 2 and "(it has 3 *.parquet files: to read them, pass --ext parquet)" in err, err
    (p / "notes.md").write_text("x\n")
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, p, tmp_path / "c", "--ext", "txt,jsonl"))
    assert rc == 2 and ("no *.{jsonl,txt} files (it has 2 *.parquet and 1 *.md files: to read them, pass "
                        "--ext md,parquet, leaving out any that are not shards)") in err, err
    # only in subdirectories: --recursive where it reads them, with the --ext that does where it does not
    q = tmp_path / "q"
    write_docs(q / "sub" / "c.parquet", make_lines(5), "parquet")
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, q, tmp_path / "d", "--ext", "parquet"))
    assert rc == 2 and "no *.parquet files (only in its subdirectories, e.g. sub/: add --recursive to read them)" in err
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, q, tmp_path / "d"))
    assert rc == 2 and ("(only its subdirectories have files, e.g. sub/, 1 *.parquet file: to read it, pass "
                        "--recursive --ext parquet)") in err, err


@pytest.mark.slow
def test_at_the_default_task_size_formats_give_one_stream_and_pieces_by_stored_size(capsys, tmp_path, wordpiece_dir):
    """What the README says holds at the default --task_size_mb: the token stream and line offsets are the
    same in every format; pieces follow the stored sizes, so .txt.gz groups two files .txt keeps apart."""
    import numpy as np

    from common.reader import SplitReader

    sizes = {"a": 7_000, "b": 30_000}  # lines: about 0.85 and 3.7 MB of text
    streams, pieces = {}, {}
    for ext in ("txt", "txt.gz", "jsonl.zst"):
        d = tmp_path / ext
        for name, n in sizes.items():
            write_docs(d / f"{name}.{ext}", make_lines(n, seed=len(name) + n), ext)
        cache = tmp_path / f"c-{ext}"
        rc, _, err = run_cli(capsys, "--tokenizer_name_or_path", str(wordpiece_dir), "--train_dir", str(d),
                             "--datasets_cache_dir", str(cache), "--max_seq_length", "64", "--ext", ext,
                             "--num_workers", "2")
        assert rc == 0, err
        r = SplitReader(cache / "train")
        tokens = np.concatenate([r.tokens(k) for k in range(len(r.manifest.pieces))])
        lengths = np.concatenate([np.diff(np.asarray(r.offsets(k))) for k in range(len(r.manifest.pieces))])
        streams[ext], pieces[ext] = (tokens.tobytes(), lengths.tobytes()), len(r.manifest.pieces)
    assert streams["txt.gz"] == streams["txt"] and streams["jsonl.zst"] == streams["txt"]
    assert pieces["txt"] == 2 and pieces["txt.gz"] == 1  # grouped by stored size, as documented
