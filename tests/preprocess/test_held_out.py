"""--validation_split_percentage: a held-out split by a seeded hash of each document's text."""

from __future__ import annotations

import json
from collections import Counter

from tests.corpus import make_lines, write_shards
from tests.preprocess.helpers import arrays, base_args, lines_of, manifest, run_cli


def _split_args(tok, train, cache, *more: str) -> list[str]:
    return base_args(tok, train, cache, "--validation_split_percentage", "20", "--task_size_mb", "0.005", *more)


def _lines(cache, split: str) -> Counter:
    return Counter(tuple(x.tolist()) for x in lines_of(cache, split))


def test_the_held_out_split_is_the_same_for_1_and_3_workers_and_partitions_the_text(capsys, tmp_path,
                                                                                    wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=3, lines_per_shard=600)
    rc, out, err = run_cli(capsys, *_split_args(wordpiece_dir, train, tmp_path / "one"))
    assert rc == 0, err
    assert "validation:" in out
    args = _split_args(wordpiece_dir, train, tmp_path / "three")
    args[args.index("--num_workers") + 1] = "3"
    assert run_cli(capsys, *args)[0] == 0
    for split in ("train", "validation"):
        assert arrays(tmp_path / "three", split) == arrays(tmp_path / "one", split)
    # every line is in exactly one split, and about 20% are held out
    assert run_cli(capsys, *base_args(wordpiece_dir, train, tmp_path / "all"))[0] == 0
    held, kept, everything = (_lines(tmp_path / "one", "validation"), _lines(tmp_path / "one", "train"),
                              _lines(tmp_path / "all", "train"))
    assert held + kept == everything
    assert 0.15 < sum(held.values()) / sum(everything.values()) < 0.25
    m = manifest(tmp_path / "one", "validation")
    assert m["parameters"]["validation_split"] == {"percentage": 20.0, "seed": 42, "side": "validation"}
    assert m["input_dir"] == str(train.resolve()) and len(m["shards"]) == 3
    # another seed holds out other documents
    assert run_cli(capsys, *_split_args(wordpiece_dir, train, tmp_path / "seed", "--validation_split_seed", "7"))[0] == 0
    assert _lines(tmp_path / "seed", "validation") != held


def test_editing_one_shard_moves_only_its_own_documents(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=3, lines_per_shard=600)
    cache = tmp_path / "cache"
    assert run_cli(capsys, *_split_args(wordpiece_dir, train, cache))[0] == 0
    before = {s: manifest(cache, s)["shards"] for s in ("train", "validation")}
    paths[1].write_text("\n".join(make_lines(500, seed=77)) + "\n")
    rc, out, _ = run_cli(capsys, *_split_args(wordpiece_dir, train, cache))
    assert rc == 0
    for split in ("train", "validation"):
        after = manifest(cache, split)["shards"]
        assert [after[0], after[2]] == [before[split][0], before[split][2]]
        assert after[1]["digest"] != before[split][1]["digest"]
    assert sum(s["lines"] for s in manifest(cache, "validation")["shards"]) > 0


def test_json_lines_records_are_split_like_the_same_text_lines(capsys, tmp_path, wordpiece_dir):
    lines = make_lines(800, seed=5)
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "a.jsonl").write_text("".join(json.dumps({"text": x}) + "\n" for x in lines))
    assert run_cli(capsys, *_split_args(wordpiece_dir, tmp_path / "txt", tmp_path / "c_txt"))[0] == 0
    assert run_cli(capsys, *_split_args(wordpiece_dir, tmp_path / "jsonl", tmp_path / "c_jsonl", "--ext", "jsonl"))[0] == 0
    for split in ("train", "validation"):
        assert list(arrays(tmp_path / "c_jsonl", split).values()) == list(arrays(tmp_path / "c_txt", split).values())


def test_a_held_out_split_and_an_eval_dir_together_are_refused(capsys, tmp_path, wordpiece_dir, corpus):
    rc, _, err = run_cli(capsys, *_split_args(wordpiece_dir, corpus, tmp_path / "c", "--eval_dir", str(corpus)))
    assert rc == 2 and "--eval_dir" in err and "--validation_split_percentage" in err
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, corpus, tmp_path / "c", "--validation_split_percentage",
                                            "100"))
    assert rc == 2 and "between 0 and 100" in err
