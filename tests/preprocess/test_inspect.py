"""mlm-inspect through its entry point: show, status, verify, samples, diff."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from preprocess.inspect_cache import _size
from preprocess.inspect_cache import main as inspect_main
from tests.corpus import write_shards
from tests.preprocess.helpers import base_args, run_cli


@pytest.fixture
def built(capsys, tmp_path, bpe_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=3)
    (train / "bad.txt").write_bytes(b"caf\xe9 line\n" + " ".join(["token"] * 80).encode() + b"\n")
    cache = tmp_path / "cache"
    shutil.copytree(train, tmp_path / "eval")  # the same text as a split of its own (one dir twice is refused)
    assert run_cli(capsys, *base_args(bpe_dir, train, cache, "--eval_dir", str(tmp_path / "eval")))[0] == 0
    return cache, [*paths, train / "bad.txt"]


def _inspect(capsys, *args) -> tuple[int, str]:
    rc = inspect_main([str(a) for a in args])
    return rc, capsys.readouterr().out


def test_show_summarises_each_split(capsys, built):
    cache, _ = built
    rc, out = _inspect(capsys, "show", cache)
    assert rc == 0 and out.count("== ") == 2
    for what in ["tokenizer  auto", "dtype uint16", "separator", "shards     4 shards", " piece", "lines,",
                 "long lines split into pieces", "invalid UTF-8", "bytes/token", "line lengths",
                 "block lengths", "mlm-preprocess --tokenizer_name_or_path"]:
        assert what in out, what
    rc, out = _inspect(capsys, "show", cache / "train", "--json")
    assert rc == 0 and json.loads(out)["totals"]["shards"] == 4


def test_status_names_the_changed_shard_even_with_size_and_mtime_restored(capsys, built):
    cache, paths = built
    assert _inspect(capsys, "status", cache / "train")[0] == 0
    st = paths[1].stat()
    data = bytearray(paths[1].read_bytes())
    data[3] = ord("Q") if data[3] != ord("Q") else ord("R")
    paths[1].write_bytes(bytes(data))
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    rc, out = _inspect(capsys, "status", cache / "train")
    assert rc == 1 and f"changed   {paths[1].name}" in out and "shards    3 unchanged, 1 changed, 0 added" in out
    assert "stale" in out and f"unchanged {paths[0].name}" not in out
    assert f"unchanged {paths[0].name}" in _inspect(capsys, "status", cache / "train", "-v")[1]
    paths[0].unlink()
    (paths[0].parent / "new.txt").write_text("a new shard\n")
    rc, out = _inspect(capsys, "status", cache / "train")
    assert f"removed   {paths[0].name}" in out and "added     new.txt" in out


def test_status_sees_a_tokenizer_change(capsys, built, tmp_path, bpe_dir):
    import shutil

    cache, _ = built
    tok = tmp_path / "tok_copy"
    shutil.copytree(bpe_dir, tok)
    assert _inspect(capsys, "status", cache / "train", "--tokenizer", tok)[0] == 0  # same content elsewhere: fresh
    (tok / "tokenizer_config.json").write_text((tok / "tokenizer_config.json").read_text().replace("{", '{"x": 1,', 1))
    rc, out = _inspect(capsys, "status", cache / "train", "--tokenizer", tok)
    assert rc == 1 and "tokenizer changed" in out


def test_verify_names_a_truncated_or_altered_array(capsys, built):
    cache, _ = built
    assert _inspect(capsys, "verify", cache)[0] == 0
    m = json.loads((cache / "train" / "manifest.json").read_text())
    lines = cache / "train" / m["pieces"][-1]["files"]["lines"]["path"]
    lines.write_bytes(lines.read_bytes()[:-8])
    blocks = cache / "train" / m["pieces"][0]["blocks"]["file"]["path"]
    data = bytearray(blocks.read_bytes())
    data[-1] ^= 0xFF
    blocks.write_bytes(bytes(data))
    rc, out = _inspect(capsys, "verify", cache / "train")
    assert rc == 1 and lines.name in out and "truncated" in out
    assert blocks.name in out and "altered" in out


def test_samples_decode_blocks_with_special_tokens_visible(capsys, built):
    cache, _ = built
    rc, out = _inspect(capsys, "samples", cache / "train", "-n", "2")
    assert rc == 0 and out.count("--- block") == 2 and "<s>" in out and "</s>" in out


def test_diff_reports_what_changed(capsys, built, tmp_path, bpe_dir):
    cache, paths = built
    rc, out = _inspect(capsys, "diff", cache / "train", cache / "validation")  # the same text in another dir
    assert rc == 1 and [x for x in out.splitlines() if x.strip()][-1].strip().startswith("input_dir:")
    paths[0].write_text("changed text\n")
    other = tmp_path / "cache2"
    assert run_cli(capsys, *base_args(bpe_dir, paths[0].parent, other, "--max_seq_length", "64"))[0] == 0
    rc, out = _inspect(capsys, "diff", cache / "train", other / "train" / "manifest.json")
    assert rc == 1 and "parameters.max_seq_length: 32 -> 64" in out and f"shard changed: {paths[0].name}" in out


def test_diff_of_two_cache_dirs_compares_split_by_split(capsys, built):
    cache, _ = built
    rc, out = _inspect(capsys, "diff", cache, cache)
    assert rc == 0 and out.count("no differences") == 2


def test_not_a_cache_is_a_clear_error(capsys, tmp_path):
    assert inspect_main(["show", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_a_count_of_one_is_singular(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=1, lines_per_shard=50)
    (train / "shard_000.txt").write_bytes(b"caf\xe9 line\n" + (train / "shard_000.txt").read_bytes())
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, cache, "--task_size_mb", "1"))[0] == 0
    out = _inspect(capsys, "show", cache / "train")[1]
    assert "shards     1 shard (" in out and "in 1 piece, " in out and "1 invalid UTF-8 sequence replaced" in out
    out += _inspect(capsys, "status", cache / "train")[1]
    assert "shards    1 unchanged, 0 changed" in out
    assert not re.search(r"\b1 [a-zA-Z0-9 -]*(pieces|shards|lines|tokens|blocks|sequences|records|ids)\b", out), out


def _section(out: str, title: str) -> list[str]:
    """The histogram rows under ``title`` in show's output."""
    lines = out.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def test_block_length_bins_stop_at_max_seq_length(capsys, built):
    cache, _ = built
    out = _inspect(capsys, "show", cache / "train")[1]
    labels = [row.split()[0] for row in _section(out, "block lengths (tokens):")]
    assert labels and labels[-1] == "32"  # blocks of exactly 32 ids: not a "32-63" bin
    assert all(int(x) <= 32 for label in labels for x in re.findall(r"\d+", label)), labels


def test_show_labels_the_bytes_stored_and_the_bytes_of_text(capsys, tmp_path, wordpiece_dir):
    import pyarrow as pa

    from tests.corpus import make_lines

    texts = make_lines(400, seed=3)
    data = "".join(json.dumps({"id": i, "text": x}) + "\n" for i, x in enumerate(texts)).encode()
    (tmp_path / "jz").mkdir()
    shard = tmp_path / "jz" / "a.jsonl.zst"
    shard.write_bytes(pa.compress(data, codec="zstd", asbytes=True))
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "jz", cache, "--ext", "jsonl.zst"))[0] == 0
    out = _inspect(capsys, "show", cache / "train")[1]
    text_bytes = sum(len(x.encode()) for x in texts)  # the documents' text, not the JSON around it
    assert shard.stat().st_size * 2 < text_bytes
    assert f"shards     1 shard ({_size(shard.stat().st_size)} stored, {_size(text_bytes)} of text) in 1 piece" in out
    assert json.loads((cache / "train" / "manifest.json").read_text())["shards"][0]["text_bytes"] == text_bytes


def test_show_of_a_held_out_split_gives_its_own_documents_not_the_train_dirs(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=3, lines_per_shard=300)
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, cache, "--validation_split_percentage", "20"))[0] == 0
    held = json.loads((cache / "validation" / "manifest.json").read_text())
    kept = json.loads((cache / "train" / "manifest.json").read_text())
    out = _inspect(capsys, "show", cache / "validation")[1]
    assert "held out   20% of the documents of the train dir (seed 42): this split holds only those" in out
    t = held["totals"]
    text = sum(s["text_bytes"] for s in held["shards"])
    stored = sum(p.stat().st_size for p in paths)
    assert f"holds      {t['lines']:,} lines, {t['tokens']:,} tokens, {_size(text)} of text, in " in out
    assert f"from 3 of the train dir's 3 shards ({_size(stored)} stored)" in out and "shards     3" not in out
    assert 0.1 * stored < text < 0.3 * stored  # about 20% of the text
    # the two sides share the text: every line (clean, one a document) counted once, newline included
    assert text + sum(s["text_bytes"] for s in kept["shards"]) == stored
    out = _inspect(capsys, "show", cache / "train")[1]
    assert "went to the validation split; this split holds the rest" in out


def test_status_of_many_shards_summarises_and_lists_all_with_verbose(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=30, lines_per_shard=5)
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, cache))[0] == 0
    for p in (paths[4], paths[17]):
        p.write_text(p.read_text() + "one more line\n")
    for k in range(12):
        (train / f"new_{k:02d}.txt").write_text(f"added text {k}\n")
    rc, out = _inspect(capsys, "status", cache / "train")
    assert rc == 1
    lines = out.splitlines()
    assert "  shards    28 unchanged, 2 changed, 12 added, 0 removed" in lines
    assert f"  changed   {paths[4].name}" in lines and f"  changed   {paths[17].name}" in lines
    assert [x for x in lines if x.startswith("  added     new_")] == [f"  added     new_{k:02d}.txt" for k in range(10)]
    assert "  added     ... and 2 more (-v lists every shard)" in lines
    assert not any(x.startswith("  unchanged") for x in lines) and len(lines) < 20
    rc, out = _inspect(capsys, "status", cache / "train", "--verbose")
    assert rc == 1 and sum(x.startswith("  unchanged shard_") for x in out.splitlines()) == 28
    assert sum(x.startswith("  added     new_") for x in out.splitlines()) == 12


def test_a_cache_built_before_text_bytes_loads_stays_fresh_and_says_so(capsys, built, bpe_dir):
    cache, paths = built
    for f in [*(cache / "train").glob("manifest.json"), *(cache / "train" / "pieces").glob("*.json")]:
        doc = json.loads(f.read_text())
        for s in doc["shards"]:
            del s["text_bytes"]
        f.write_text(json.dumps(doc))
    out = _inspect(capsys, "show", cache / "train")[1]
    assert "text size not recorded: built before it was counted, --overwrite_cache records it" in out
    eval_dir = paths[0].parent.parent / "eval"
    rc, out, _ = run_cli(capsys, *base_args(bpe_dir, paths[0].parent, cache, "--eval_dir", str(eval_dir)))
    assert rc == 0 and "train: cache is fresh" in out
