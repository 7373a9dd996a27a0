"""mlm-inspect through its entry point: show, status, verify, samples, diff."""

from __future__ import annotations

import json
import os

import pytest

from preprocess.inspect_cache import main as inspect_main
from tests.corpus import write_shards
from tests.preprocess.helpers import base_args, run_cli


@pytest.fixture
def built(capsys, tmp_path, bpe_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=3)
    (train / "bad.txt").write_bytes(b"caf\xe9 line\n" + " ".join(["token"] * 80).encode() + b"\n")
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(bpe_dir, train, cache, "--eval_dir", str(train)))[0] == 0
    return cache, [*paths, train / "bad.txt"]


def _inspect(capsys, *args) -> tuple[int, str]:
    rc = inspect_main([str(a) for a in args])
    return rc, capsys.readouterr().out


def test_show_summarises_each_split(capsys, built):
    cache, _ = built
    rc, out = _inspect(capsys, "show", cache)
    assert rc == 0 and out.count("== ") == 2
    for what in ["tokenizer  auto", "dtype uint16", "separator", "shards     4", " pieces, ", "lines,",
                 "long lines split into pieces", "1 invalid UTF-8", "bytes/token", "line lengths", "block lengths",
                 "mlm-preprocess --tokenizer_name_or_path"]:
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
    assert rc == 1 and f"changed   {paths[1].name}" in out and f"unchanged {paths[0].name}" in out
    assert "stale" in out
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
    rc, out = _inspect(capsys, "diff", cache / "train", cache / "validation")
    assert rc == 0 and "no differences" in out
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
