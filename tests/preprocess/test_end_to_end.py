"""The preprocess command through its CLI: round trip, workers, the content-hash cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from common.reader import SplitReader
from tests.corpus import make_lines, write_shards
from tests.preprocess.helpers import arrays, base_args, lines_of, manifest, run_cli, token_file_stats


def test_round_trip_blocks_decode_to_the_cleaned_lines(capsys, tmp_path, bpe_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=3, lines_per_shard=200)
    paths[1].write_text("  padded line  \n\n\t\n" + paths[1].read_text(), encoding="utf-8")
    cache = tmp_path / "cache"
    rc, out, err = run_cli(capsys, *base_args(bpe_dir, train, cache))
    assert rc == 0, err
    assert "3 tokenized" in out
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    expected = []
    for p in sorted(paths):
        expected += [s.strip() for s in p.read_text().splitlines() if s.strip()]
    got = lines_of(cache)
    assert len(got) == len(expected) == manifest(cache)["totals"]["lines"]
    for ids, text in zip(got, expected):
        assert ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]
    # blocks: bos + lines joined by the separator + eos, within max_seq_length
    r = SplitReader(cache / "train")
    sep = r.manifest.tokenizer.separator.id
    joined = []
    for i in range(r.n_blocks):
        b = r.block(i)
        assert len(b) <= 32 and b[0] == r.bos and b[-1] == r.eos
        joined.extend(t for t in b[1:-1].tolist() if t != sep)
    flat = [t for ids in got for t in ids.tolist()]
    assert joined == flat  # nothing lost, nothing reordered
    m = manifest(cache)
    assert m["tokenizer"]["dtype"] == "uint16" and np.load(cache / "train" / m["pieces"][0]["files"]["tokens"]["path"]).dtype == np.uint16
    assert m["shards"][0]["path"] == "shard_000.txt" and m["totals"]["blocks"] == r.n_blocks


def test_one_worker_and_three_workers_write_identical_bytes(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=4, lines_per_shard=600)
    caches = {}
    for task_mb in ("4", "0.004"):  # the shards in one piece; each shard a piece cut into several tasks
        for workers in ("1", "3"):
            caches[task_mb, workers] = tmp_path / f"c{task_mb}-{workers}"
            args = base_args(wordpiece_dir, train, caches[task_mb, workers], "--task_size_mb", task_mb)
            args[args.index("--num_workers") + 1] = workers
            assert run_cli(capsys, *args)[0] == 0
    for task_mb, pieces in (("4", 1), ("0.004", 4)):
        a, b = caches[task_mb, "1"], caches[task_mb, "3"]
        assert arrays(a) == arrays(b) and len(manifest(a)["pieces"]) == pieces
        assert manifest(a)["shards"] == manifest(b)["shards"] and manifest(a)["pieces"] == manifest(b)["pieces"]


def test_every_shard_is_read_and_ext_takes_a_dot(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=3)
    (train / "notes.md").write_text("not a shard\n")
    rc, out, _ = run_cli(capsys, *base_args(wordpiece_dir, train, tmp_path / "c", "--ext", ".txt"))
    assert rc == 0 and [s["path"] for s in manifest(tmp_path / "c")["shards"]] == [
        "shard_000.txt", "shard_001.txt", "shard_002.txt"]


def test_cache_cases(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=3)
    cache = tmp_path / "cache"
    args = base_args(wordpiece_dir, train, cache, "--task_size_mb", "0.001")  # each shard a piece of its own
    assert run_cli(capsys, *args)[0] == 0
    first = token_file_stats(cache)

    # 1. nothing changed: fresh, nothing tokenized, manifest untouched
    mtime = (cache / "train" / "manifest.json").stat().st_mtime_ns
    rc, out, _ = run_cli(capsys, *args)
    assert rc == 0 and "cache is fresh" in out
    assert (cache / "train" / "manifest.json").stat().st_mtime_ns == mtime

    # 2. one byte changed, size and mtime put back: only that shard
    st = paths[1].stat()
    data = bytearray(paths[1].read_bytes())
    data[10] = ord("Z") if data[10] != ord("Z") else ord("Y")
    paths[1].write_bytes(bytes(data))
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert paths[1].stat().st_size == st.st_size
    rc, out, _ = run_cli(capsys, *args)
    assert rc == 0 and "2 shards reused, 1 tokenized" in out
    now = token_file_stats(cache)
    assert now["shard_000.txt"] == first["shard_000.txt"] and now["shard_002.txt"] == first["shard_002.txt"]
    assert now["shard_001.txt"] != first["shard_001.txt"]

    # 3. a shard added, then one removed: only that shard's work
    (train / "shard_003.txt").write_text("\n".join(make_lines(50, seed=42)) + "\n")
    rc, out, _ = run_cli(capsys, *args)
    assert "3 shards reused, 1 tokenized" in out and manifest(cache)["totals"]["shards"] == 4
    paths[0].unlink()
    rc, out, _ = run_cli(capsys, *args)
    assert "3 shards reused, 0 tokenized, 0 repacked" in out
    assert [s["path"] for s in manifest(cache)["shards"]] == ["shard_001.txt", "shard_002.txt", "shard_003.txt"]

    # 4. only --max_seq_length: repack from stored tokens, no tokenization
    before = token_file_stats(cache)
    args64 = list(args)
    args64[args64.index("--max_seq_length") + 1] = "64"
    rc, out, _ = run_cli(capsys, *args64)
    assert "3 shards reused, 0 tokenized, 3 repacked" in out
    assert token_file_stats(cache) == before and manifest(cache)["parameters"]["max_seq_length"] == 64

    # 5. --overwrite_cache: everything again
    rc, out, _ = run_cli(capsys, *args64, "--overwrite_cache")
    assert "0 shards reused, 3 tokenized, 3 repacked" in out

    # 6. unreferenced outputs are gone: exactly the manifest's files remain
    m = manifest(cache)
    named = {f["path"] for p in m["pieces"] for f in [*p["files"].values(), p["blocks"]["file"]]}
    named |= {f"pieces/{p['key']}.json" for p in m["pieces"]} | {f"blocks/{p['blocks']['key']}.json" for p in m["pieces"]}
    on_disk = {str(p.relative_to(cache / "train")) for p in (cache / "train").rglob("*") if p.is_file()}
    assert on_disk == named | {"manifest.json"}


def test_tokenizer_change_rebuilds_everything(capsys, tmp_path, wordpiece_dir):
    import shutil

    train = tmp_path / "train"
    write_shards(train, n_shards=2)
    tok = tmp_path / "tok"
    shutil.copytree(wordpiece_dir, tok)
    cache = tmp_path / "cache"
    args = base_args(tok, train, cache)
    assert run_cli(capsys, *args)[0] == 0
    digest = manifest(cache)["tokenizer"]["digest"]
    cfg = tok / "tokenizer_config.json"
    cfg.write_text(cfg.read_text().replace("{", '{\n  "model_max_length": 77,', 1))
    rc, out, _ = run_cli(capsys, *args)
    assert rc == 0 and "0 shards reused, 2 tokenized" in out
    assert manifest(cache)["tokenizer"]["digest"] != digest
    # a tokenizing parameter is part of the key too
    assert run_cli(capsys, *args, "--add_space_token")[0] == 2  # no <_> in this vocab: refused


def test_invalid_utf8_is_counted_not_fatal(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    train.mkdir()
    (train / "a.txt").write_bytes(b"good line\nbad \xff\xfe line\n" + "ภาษา".encode()[:-1] + b"\n")
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, train, tmp_path / "c"))
    assert rc == 0, err
    m = manifest(tmp_path / "c")
    assert m["totals"]["invalid_utf8"] == 3 and m["totals"]["lines"] == 3


def test_long_lines_are_split_and_counted(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    train.mkdir()
    (train / "a.txt").write_text("short line\n" + " ".join(["the"] * 100) + "\nanother\n")
    assert run_cli(capsys, *base_args(wordpiece_dir, train, tmp_path / "c"))[0] == 0
    m = manifest(tmp_path / "c")
    assert m["totals"]["lines_split"] == 1 and m["totals"]["lines"] == 3
    r = SplitReader(tmp_path / "c" / "train")
    tok = AutoTokenizer.from_pretrained(wordpiece_dir)
    expected = [i for line in ["short line", " ".join(["the"] * 100), "another"]
                for i in tok(line, add_special_tokens=False)["input_ids"]]
    sep = r.manifest.tokenizer.separator.id
    assert sep not in expected
    joined = [t for i in range(r.n_blocks) for t in r.block(i)[1:-1].tolist() if t != sep]
    assert joined == expected  # every id kept, in order, the long line cut into block-sized pieces
    assert max(len(r.block(i)) for i in range(r.n_blocks)) == 32


@pytest.mark.parametrize("case,pattern", [
    ("missing_dir", r"--train_dir .*no such directory"),
    ("empty_dir", r"no \*\.txt files \(it is empty\)"),
    ("wrong_ext", r"no \*\.txt files \(it has 1 \*\.md file: to read it, pass --ext md\)"),
    ("unreadable", r"not readable"),
    ("bad_tokenizer", r"cannot load as type 'auto'"),
    ("no_tokenizer", r"no such file or directory"),
    ("short_seq", r"--max_seq_length 2: must be at least 3"),
    ("unknown_flag", r"--bogus_flag"),
    ("abbreviated_flag", r"unrecognized arguments: --overwrite"),
    ("subdirs_only", r"no \*\.txt files \(only in its subdirectories, e.g. nested/: add --recursive to read them\)"),
    ("cache_is_a_file", r"cannot be used as a cache dir"),
    ("bad_type", r"unknown --tokenizer_type 'nope'; valid types: "),
    ("huge_seq", r"--max_seq_length 99999999999999999999: must be at least 3 .* and at most 1,048,576"),
    ("nan_task", r"--task_size_mb nan: must be a positive number of MiB"),
    ("too_many_workers", r"--num_workers 100000: must be between 1 and 1024"),
    ("non_utf8_dir", r"--train_dir: the path .* is not valid UTF-8"),
    ("model_dir_only", r"--tokenizer_name_or_path .*model: no tokenizer files for --tokenizer_type auto \(looked for "
                       r"tokenizer\.json, .*; the dir holds config\.json, model\.safetensors\); it looks like a model "
                       r"dir saved without its tokenizer"),
    ("only_unknown_ids", r"encodes none of \d+ sample lines .* to any id other than the unknown token '\[UNK\]' \(1\), "
                         r"e\.g\. '.+' -> \[1, 1"),
    ("no_ids_at_all", r"encodes none of \d+ sample lines .* to any id other than the unknown token .*, e\.g\. '.+' -> "
                      r"\[\]; a cache of it would hold nothing to learn"),
])
def test_bad_input_is_one_clear_line_and_no_manifest(capsys, tmp_path, wordpiece_dir, case, pattern):
    train = tmp_path / "train"
    write_shards(train, n_shards=1)
    tok, extra = wordpiece_dir, []
    if case == "missing_dir":
        train = tmp_path / "nope"
    elif case == "empty_dir":
        train = tmp_path / "empty"
        train.mkdir()
    elif case == "wrong_ext":
        train = tmp_path / "md"
        train.mkdir()
        (train / "a.md").write_text("x\n")
    elif case == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        (train / "shard_000.txt").chmod(0)
    elif case == "bad_tokenizer":
        tok = tmp_path / "badtok"
        tok.mkdir()
        (tok / "tokenizer.json").write_text("{not json")
    elif case == "no_tokenizer":
        tok = tmp_path / "missing-tok"
    elif case == "short_seq":
        extra = ["--max_seq_length", "2"]
    elif case == "unknown_flag":
        extra = ["--bogus_flag", "1"]
    elif case == "abbreviated_flag":
        extra = ["--overwrite"]
    elif case == "subdirs_only":
        train = tmp_path / "parent"
        write_shards(train / "nested", n_shards=1)
    elif case == "bad_type":
        extra = ["--tokenizer_type", "nope"]
    elif case == "huge_seq":
        extra = ["--max_seq_length", "99999999999999999999"]
    elif case == "nan_task":
        extra = ["--task_size_mb", "nan"]
    elif case == "too_many_workers":
        extra = ["--num_workers", "100000"]
    elif case == "non_utf8_dir":
        train = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    elif case == "model_dir_only":  # AutoTokenizer loads it as 5 special ids: a cache of 0 tokens, exit 0
        tok = tmp_path / "model"
        tok.mkdir()
        (tok / "config.json").write_text('{"model_type": "roberta", "vocab_size": 50}')
        (tok / "model.safetensors").write_bytes(b"\0" * 16)
    elif case in ("only_unknown_ids", "no_ids_at_all"):
        tok = _empty_tokenizer(tmp_path / "tok", unk=case == "only_unknown_ids")
    cache = tmp_path / "cache"
    if case == "cache_is_a_file":
        cache = tmp_path / "afile"
        cache.write_text("not a dir")
    args = base_args(tok, train, cache)
    if extra and extra[0] in args:  # the case's value replaces the base one (a repeated flag gets a note)
        args[args.index(extra[0]) + 1] = extra[1]
        extra = []
    rc, out, err = run_cli(capsys, *args, *extra)
    assert rc == 2
    assert re.search(pattern, err), err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("manifest.json"))


def _empty_tokenizer(out: Path, unk: bool) -> Path:
    """A tokenizer with files but no vocabulary beyond its special tokens: every word is [UNK] (word
    level), or nothing at all (an empty BPE)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    model = models.WordLevel({t: i for i, t in enumerate(specials)}, unk_token="[UNK]") if unk else models.BPE({}, [])
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out)
    return out


def test_unreadable_file_even_as_root(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=1)
    (train / "broken.txt").symlink_to(tmp_path / "does-not-exist")  # a dangling link cannot be read
    (train / "dir.txt").mkdir()
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, train, tmp_path / "c"))
    assert rc == 2 and "broken.txt" in err and "not readable" in err


def test_a_second_run_on_a_locked_cache_says_who_holds_it(capsys, tmp_path, wordpiece_dir):
    from preprocess.cache_dir import cache_lock

    train = tmp_path / "train"
    write_shards(train, n_shards=1)
    cache = tmp_path / "cache"
    with cache_lock(cache):
        rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, train, cache))
    assert rc == 2 and f"pid {os.getpid()}" in err and "another preprocess run" in err
    assert run_cli(capsys, *base_args(wordpiece_dir, train, cache))[0] == 0  # released


def test_eval_dir_goes_to_validation(capsys, tmp_path, spm_dir):
    train, ev = tmp_path / "train", tmp_path / "eval"
    write_shards(train, n_shards=2)
    write_shards(ev, n_shards=1, seed=3)
    cache = tmp_path / "cache"
    rc, out, _ = run_cli(capsys, *base_args(spm_dir, train, cache, "--eval_dir", str(ev)))
    assert rc == 0 and out.startswith("train:") and "validation:" in out
    assert manifest(cache, "validation")["totals"]["shards"] == 1
    assert manifest(cache)["tokenizer"]["encoder"] == "sentencepiece"
    assert manifest(cache)["tokenizer"]["separator"]["token"] == "▁"


def test_a_vocabulary_over_65536_ids_gives_a_uint32_cache(capsys, tmp_path):
    from bench.train_cpu import make_tokenizer  # a word-level fast tokenizer of any size, made here
    from train.dataset import MemmapConcatFullSentenceTextDataset

    tok = make_tokenizer(70_000, tmp_path / "tok")
    train = tmp_path / "train"
    train.mkdir()
    (train / "a.txt").write_text("w5 w65535 w65536\nw69998 w4\n")
    cache = tmp_path / "c"
    assert run_cli(capsys, *base_args(tok, train, cache))[0] == 0
    m = manifest(cache)
    assert m["tokenizer"]["dtype"] == "uint32"
    assert np.load(cache / "train" / m["pieces"][0]["files"]["tokens"]["path"]).dtype == np.uint32
    assert [x.tolist() for x in lines_of(cache)] == [[5, 65535, 65536], [69998, 4]]
    block = MemmapConcatFullSentenceTextDataset(cache / "train", 32)[0].tolist()
    assert block[0] == 0 and block[-1] == 2 and 65536 in block and 69998 in block


def test_lines_longer_than_64_kib_across_task_boundaries(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    train.mkdir()
    long_line = " ".join(["language"] * 12_000)  # ~105 KB: longer than the 64 KiB the boundary search reads at once
    (train / "a.txt").write_text("\n".join(["short one", long_line, "middle", long_line, "last"]) + "\n")
    one, many = tmp_path / "one", tmp_path / "many"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, one))[0] == 0
    assert run_cli(capsys, *base_args(wordpiece_dir, train, many, "--task_size_mb", "0.03"))[0] == 0
    assert arrays(one) == arrays(many)
    assert manifest(many)["totals"]["lines"] == 5
    lengths = [len(x) for x in lines_of(many)]
    tok = AutoTokenizer.from_pretrained(wordpiece_dir)
    assert lengths == [len(tok(s, add_special_tokens=False)["input_ids"]) for s in ["short one", long_line, "middle",
                                                                                  long_line, "last"]]
    assert lengths[1] == 12_000


@pytest.mark.parametrize("text", [b"alpha beta\rgamma\r\rdelta\r", b"alpha beta\ngamma\n\ndelta", b"alpha beta\r\ngamma\r\n\r\ndelta\r\n"])
def test_cr_only_crlf_and_no_trailing_newline_read_like_lf(capsys, tmp_path, wordpiece_dir, text):
    ref, other = tmp_path / "ref", tmp_path / "other"
    ref.mkdir()
    other.mkdir()
    (ref / "a.txt").write_bytes(b"alpha beta\ngamma\ndelta\n")
    (other / "a.txt").write_bytes(text)
    assert run_cli(capsys, *base_args(wordpiece_dir, ref, tmp_path / "c1"))[0] == 0
    assert run_cli(capsys, *base_args(wordpiece_dir, other, tmp_path / "c2"))[0] == 0
    assert manifest(tmp_path / "c2")["totals"]["lines"] == 3
    assert [x.tolist() for x in lines_of(tmp_path / "c1")] == [x.tolist() for x in lines_of(tmp_path / "c2")]


def test_a_json_config_is_the_flags_it_stands_for(capsys, tmp_path, wordpiece_dir):
    import json

    train = tmp_path / "train"
    write_shards(train, n_shards=1)
    settings = {"tokenizer_name_or_path": str(wordpiece_dir), "train_dir": str(train), "max_seq_length": 48,
                "datasets_cache_dir": str(tmp_path / "c"), "num_workers": 1, "add_space_token": False}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(settings))
    assert run_cli(capsys, str(config))[0] == 0
    assert manifest(tmp_path / "c")["parameters"]["max_seq_length"] == 48
    for key, value, said in [("add_space_token", "false", "add_space_token must be bool"),
                             ("max_seq_length", "128", "max_seq_length must be int"),
                             ("num_workers", 1.5, "num_workers must be int"), ("ext", 5, "ext must be str"),
                             ("bogus", 1, "unknown keys ['bogus']")]:
        config.write_text(json.dumps({**settings, key: value}))
        rc, _, err = run_cli(capsys, str(config))
        assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, err
    config.write_text("{not json")
    rc, _, err = run_cli(capsys, str(config))
    assert rc == 2 and "cannot read the config" in err
    rc, _, err = run_cli(capsys, str(tmp_path / "missing.json"))
    assert rc == 2 and "cannot read the config" in err
