"""Corpus names (common/corpora.py): one rule, said in the error, checked before any work by both stages;
names of any script, Thai with its combining marks, through preprocess, training and inspection."""

from __future__ import annotations

import json

import pytest

from preprocess.__main__ import main as preprocess_main
from preprocess.inspect_cache import main as inspect_main
from tests.corpus import write_shards
from train.__main__ import main as train_main

RULE = "a corpus name is letters (of any script, with their marks), digits, '_' and '-'"


@pytest.mark.parametrize("name, fix", [("Docs.EN", "Docs_EN"), ("my docs", "my_docs"), ("-x", "x"), ("", None),
                                       ("a" * 65, None)])
@pytest.mark.parametrize("main", [preprocess_main, train_main], ids=["mlm-preprocess", "mlm-train"])
def test_a_bad_corpus_name_is_one_line_stating_the_rule_before_any_work(capsys, tmp_path, wordpiece_dir, name,
                                                                        fix, main):
    write_shards(tmp_path / "docs", n_shards=1, lines_per_shard=10)
    cache = tmp_path / "cache"
    args = ["--tokenizer_name_or_path", str(wordpiece_dir), "--train_dir", f"a={tmp_path / 'docs'},{name}=b",
            "--datasets_cache_dir", str(cache), "--max_seq_length", "32"]
    rc = main(args + (["--output_dir", str(tmp_path / "out")] if main is train_main else []))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{name}: {RULE}" in err and "no such directory" not in err, err
    if fix:
        assert f"e.g. {fix}" in err and f"./{name}=" in err  # the renamed corpus, or the dir of that name
    assert not cache.exists() and not (tmp_path / "out").exists()


def test_a_name_with_a_slash_is_a_dir_and_a_missing_one_says_both_readings(capsys, tmp_path, wordpiece_dir):
    odd = tmp_path / "x=y"  # a dir whose name holds '=': a path with '/', so never a corpus name
    write_shards(odd, n_shards=1, lines_per_shard=20)
    rc = preprocess_main(["--tokenizer_name_or_path", str(wordpiece_dir), "--train_dir", str(odd),
                          "--datasets_cache_dir", str(tmp_path / "c1"), "--max_seq_length", "32"])
    assert rc == 0 and (tmp_path / "c1" / "train" / "manifest.json").is_file()
    capsys.readouterr()
    rc = preprocess_main(["--tokenizer_name_or_path", str(wordpiece_dir), "--train_dir", f"x/y={odd}",
                          "--datasets_cache_dir", str(tmp_path / "c2"), "--max_seq_length", "32"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"x/y={odd}: no such directory" in err and f"x/y: {RULE}" in err, err


def test_thai_names_with_combining_marks_go_through_every_command(capsys, tmp_path, bpe_dir):
    """ข่าว holds U+0E48 (a tone mark, category Mn, not alphanumeric), ภาษาไทย none: both are names."""
    names = ["ภาษาไทย", "ข่าว"]
    for k in range(len(names)):
        write_shards(tmp_path / f"t{k}", n_shards=1, lines_per_shard=300, seed=k)
    cache = tmp_path / "cache"
    spec = ",".join(f"{n}={tmp_path / f't{k}'}" for k, n in enumerate(names))
    assert preprocess_main(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", spec, "--datasets_cache_dir",
                            str(cache), "--max_seq_length", "32", "--validation_split_percentage", "10"]) == 0
    out = capsys.readouterr().out
    assert json.loads((cache / "corpora.json").read_text(encoding="utf-8")) == {"corpora": names}
    assert all(f"{n} train:" in out and (cache / "corpora" / n / "train" / "manifest.json").is_file() for n in names)
    assert inspect_main(["verify", str(cache)]) == 0
    assert inspect_main(["show", str(cache)]) == 0
    shown = capsys.readouterr().out
    assert all(f"corpora/{n}/train" in shown for n in names), shown
    assert train_main(["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(cache),
                       "--max_seq_length", "32", "--architecture", "roberta-tiny", "--output_dir",
                       str(tmp_path / "out"), "--max_steps", "2", "--per_device_train_batch_size", "4",
                       "--save_strategy", "no", "--report_to", "none", "--mixture", "ภาษาไทย=1,ข่าว=3"]) == 0
    metrics = json.loads((tmp_path / "out" / "all_results.json").read_text(encoding="utf-8"))
    assert {f"eval_{n}_loss" for n in names} <= set(metrics), metrics


def test_a_name_typed_composed_or_decomposed_is_one_name():
    from common.corpora import parse_named
    from common.errors import UserError

    with pytest.raises(UserError, match="given twice"):
        parse_named("A\u0308=x,\u00c4=y", "--train_dir")  # Ä as A + combining diaeresis, and precomposed
