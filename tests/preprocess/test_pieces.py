"""Small files grouped into pieces: blocks cross file boundaries, cache files scale with bytes, edits stay local."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from common.format import PIECES_DIR
from common.reader import SplitReader
from preprocess.plan import group_shards
from tests.corpus import make_lines, write_shards
from tests.preprocess.helpers import arrays, base_args, manifest, run_cli


def _small_files(d: Path, lines: list[str], per_file: int) -> list[Path]:
    d.mkdir(parents=True)
    paths = []
    for k in range(0, len(lines), per_file):
        p = d / f"doc_{k // per_file:05d}.txt"
        p.write_text("\n".join(lines[k : k + per_file]) + "\n")
        paths.append(p)
    return paths


def _cache_files(cache: Path) -> int:
    return sum(1 for p in (cache / "train").rglob("*") if p.is_file())


def test_the_same_lines_in_one_file_or_3000_files_give_the_same_blocks(capsys, tmp_path, wordpiece_dir):
    lines = make_lines(6000, seed=7, max_words=12)
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    (one / "all.txt").write_text("\n".join(lines) + "\n")
    _small_files(many, lines, per_file=2)
    for text in (one, many):
        args = base_args(wordpiece_dir, text, tmp_path / f"cache_{text.name}")
        args[args.index("--max_seq_length") + 1] = "128"
        assert run_cli(capsys, *args)[0] == 0
    a, b = SplitReader(tmp_path / "cache_one" / "train"), SplitReader(tmp_path / "cache_many" / "train")
    assert len(b.manifest.shards) == 3000 and len(b.manifest.pieces) < 10  # 3000 files, a few pieces
    assert abs(a.n_blocks - b.n_blocks) <= 0.01 * a.n_blocks
    fill = b.block_lengths().mean() / 128
    assert fill > 0.9, f"blocks {fill:.0%} full: small files must not make small blocks"
    sep = a.manifest.tokenizer.separator.id

    def words(r: SplitReader) -> np.ndarray:  # every block's ids, separators dropped: nothing lost or reordered
        ids = np.concatenate([r.block(i)[1:-1] for i in range(r.n_blocks)])
        return ids[ids != sep]

    assert np.array_equal(words(a), words(b))
    assert _cache_files(tmp_path / "cache_many") < 40  # not 5 files a shard
    m = manifest(tmp_path / "cache_many")
    assert sum(p["shards"] for p in m["pieces"]) == 3000 and m["totals"]["pieces"] == len(m["pieces"])
    assert [s["path"] for s in m["shards"]] == sorted(s["path"] for s in m["shards"])


def test_editing_one_small_file_retokenizes_its_piece_only_and_equals_a_clean_build(capsys, tmp_path,
                                                                                  wordpiece_dir):
    text = tmp_path / "text"
    paths = _small_files(text, make_lines(1200, seed=3, max_words=10), per_file=4)  # 300 files of ~150 bytes
    cache, clean = tmp_path / "cache", tmp_path / "clean"
    args = base_args(wordpiece_dir, text, cache, "--task_size_mb", "0.005")  # pieces of ~5 KB: ~30 files
    assert run_cli(capsys, *args)[0] == 0
    pieces = manifest(cache)["pieces"]
    assert 4 <= len(pieces) <= 40
    before = {p.name for p in (cache / "train" / PIECES_DIR).glob("*.tokens.npy")}

    paths[100].write_text("an edited document\nwith two lines\n")
    rc, out, _ = run_cli(capsys, *args)
    first = 0
    for p in manifest(cache)["pieces"]:
        if first <= 100 < first + p["shards"]:
            edited = p["shards"]
        first += p["shards"]
    assert rc == 0 and f"{300 - edited} shards reused, {edited} tokenized" in out and edited < 60
    after = {p.name for p in (cache / "train" / PIECES_DIR).glob("*.tokens.npy")}
    assert len(before - after) == 1 and len(after - before) == 1  # one piece replaced, the rest untouched

    (text / "doc_00100_b.txt").write_text("a new file between two others\n")  # joins one piece
    rc, out, _ = run_cli(capsys, *args)
    assert rc == 0 and " reused, " in out
    assert len(after - {p.name for p in (cache / "train" / PIECES_DIR).glob("*.tokens.npy")}) <= 2
    assert run_cli(capsys, *base_args(wordpiece_dir, text, clean, "--task_size_mb", "0.005"))[0] == 0
    assert arrays(cache) == arrays(clean) and manifest(cache)["pieces"] == manifest(clean)["pieces"]


def test_grouping_depends_on_names_and_sizes_only():
    names = [f"d/{i:05d}.txt" for i in range(5000)]
    sizes = [500 + (i * 37) % 400 for i in range(5000)]
    counts = group_shards(names, sizes, 1 << 20)
    assert sum(counts) == 5000 and counts == group_shards(names, sizes, 1 << 20)
    assert max(c * 900 for c in counts) <= 4 << 20  # no piece past 4 x the target
    edited = list(sizes)
    edited[2500] = 800  # one small file edited: every boundary stays where it was
    assert group_shards(names, edited, 1 << 20) == counts
    assert group_shards(["a", "b", "c"], [10, 3 << 20, 10], 1 << 20) == [1, 1, 1]  # a big file stands alone


def test_a_format_1_cache_is_rebuilt_and_its_arrays_removed(capsys, tmp_path, wordpiece_dir):
    text = tmp_path / "text"
    write_shards(text, n_shards=2)
    cache = tmp_path / "cache"
    args = base_args(wordpiece_dir, text, cache)
    assert run_cli(capsys, *args)[0] == 0
    mpath = cache / "train" / "manifest.json"
    m = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**m, "format_version": 1}))
    old = cache / "train" / "shards"
    old.mkdir()
    (old / f"{'a' * 32}.tokens.npy").write_bytes(b"old")
    (old / "notes.txt").write_text("mine")
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0 and "format_version 1" in err and json.loads(mpath.read_text())["format_version"] == 2
    assert [p.name for p in old.iterdir()] == ["notes.txt"]  # our old array gone, the user's file kept
    (old / "notes.txt").unlink()
    (old / f"{'b' * 32}.lines.npy").write_bytes(b"old")
    assert run_cli(capsys, *args)[0] == 0 and not old.exists()  # emptied: the format-1 dir goes too


@pytest.mark.slow
def test_30000_small_files_preprocess_rerun_fresh_and_train(capsys, tmp_path, wordpiece_dir):
    from train.__main__ import main as train_main

    text = tmp_path / "text"
    _small_files(text, make_lines(30000, seed=11, max_words=30), per_file=1)
    cache = tmp_path / "cache"
    args = base_args(wordpiece_dir, text, cache, "--validation_split_percentage", "10")  # two splits of the files
    args[args.index("--num_workers") + 1] = "2"
    assert run_cli(capsys, *args)[0] == 0
    m = manifest(cache)
    assert len(m["shards"]) == 30000 and len(m["pieces"]) <= 10 and _cache_files(cache) < 60
    t = time.perf_counter()
    rc, out, _ = run_cli(capsys, *args)
    print(f"fresh rerun of 30,000 files: {time.perf_counter() - t:.1f} s")
    assert rc == 0 and out.count("cache is fresh") == 2
    flags = ["--tokenizer_name_or_path", str(wordpiece_dir), "--datasets_cache_dir", str(cache),
             "--max_seq_length", "32", "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / "out"),
             "--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none",
             "--dataloader_num_workers", "0"]
    assert train_main(flags) == 0
    maps = Path(f"/proc/{os.getpid()}/maps").read_text().count(f"{cache}/")
    assert maps < 100, f"{maps} maps of cache files: must grow with pieces, not files"


def test_text_the_vocabulary_misses_is_counted_per_shard_and_warned_about(capsys, tmp_path, wordpiece_dir):
    from preprocess.inspect_cache import main as inspect_main

    text = tmp_path / "text"
    write_shards(text, n_shards=2)
    cache = tmp_path / "cache"
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, text, cache))
    assert rc == 0 and "unknown token" not in err  # text the vocabulary covers: no warning
    assert {s["unk_tokens"] for s in manifest(cache)["shards"]} == {0}
    (text / "shard_001.txt").write_text("\n".join(["日本語のテキスト 中文文本 한국어 🤗🚀"] * 200) + "\n")
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, text, cache))
    assert rc == 0 and "of the ids are the unknown token (worst shard: shard_001.txt" in err
    assert "日本語のテキスト" in err  # an example line
    m = manifest(cache)
    by_path = {s["path"]: s["unk_tokens"] for s in m["shards"]}
    assert by_path["shard_000.txt"] == 0 < by_path["shard_001.txt"] == m["totals"]["unk_tokens"]
    assert inspect_main(["show", str(cache / "train")]) == 0
    assert "ids of the unknown token" in capsys.readouterr().out


def test_recursive_reads_nested_dirs_by_their_path_and_stays_fresh_when_moved(capsys, tmp_path, wordpiece_dir):
    from preprocess.inspect_cache import main as inspect_main

    text = tmp_path / "corpus"
    write_shards(text / "news" / "2024", n_shards=2)
    write_shards(text / "wiki", n_shards=1, seed=3)
    (text / "top.txt").write_text("a line at the top\n")
    (text / "wiki" / "loop").symlink_to(text)  # a link loop: never entered
    cache = tmp_path / "cache"
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, text, cache, "--recursive"))
    assert rc == 0, err
    paths = [s["path"] for s in manifest(cache)["shards"]]
    assert paths == ["news/2024/shard_000.txt", "news/2024/shard_001.txt", "top.txt", "wiki/shard_000.txt"]
    assert manifest(cache)["parameters"]["recursive"] is True
    # the same corpus elsewhere: fresh; a nested file edited: status names it
    moved = tmp_path / "moved"
    text.rename(moved)
    (moved / "wiki" / "loop").unlink()
    rc, out, _ = run_cli(capsys, *base_args(wordpiece_dir, moved, cache, "--recursive"))
    assert rc == 0 and "4 shards reused, 0 tokenized, 0 repacked" in out  # only the manifest's input_dir changes
    (moved / "news" / "2024" / "shard_001.txt").write_text("edited\n")
    assert inspect_main(["status", str(cache / "train"), "--input_dir", str(moved)]) == 1
    assert "news/2024/shard_001.txt" in capsys.readouterr().out
    # without --recursive, only the top file is read; a dir of subdirs only says what to add
    only_sub = tmp_path / "only_sub"
    write_shards(only_sub / "a", n_shards=1)
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, only_sub, tmp_path / "c2"))
    assert rc == 2 and "add --recursive" in err


def test_verify_finds_a_shard_moved_between_pieces_by_hand(capsys, tmp_path, wordpiece_dir):
    from preprocess.inspect_cache import main as inspect_main

    text = tmp_path / "text"
    _small_files(text, make_lines(600, seed=2, max_words=8), per_file=3)
    cache = tmp_path / "cache"
    args = base_args(wordpiece_dir, text, cache, "--task_size_mb", "0.002")
    assert run_cli(capsys, *args)[0] == 0
    m = manifest(cache)
    k = m["pieces"][0]["shards"]
    (text / m["shards"][k - 1]["path"]).write_text("")  # the first piece's last shard, emptied: its name keeps it there
    assert run_cli(capsys, *args)[0] == 0
    assert inspect_main(["verify", str(cache)]) == 0
    capsys.readouterr()
    mpath = cache / "train" / "manifest.json"
    m = json.loads(mpath.read_text())
    assert m["pieces"][0]["shards"] == k and m["shards"][k - 1]["tokens"] == 0
    m["pieces"][0]["shards"] -= 1  # the empty shard now opens the second piece: every count still agrees
    m["pieces"][1]["shards"] += 1
    mpath.write_text(json.dumps(m))
    assert inspect_main(["verify", str(cache)]) == 1
    assert "other shards than its record" in capsys.readouterr().out
