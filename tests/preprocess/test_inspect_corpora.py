"""mlm-inspect on named corpora (common/corpora.py) through its entry point: diff pairs corpus with corpus and
split with split, status --input_dir takes NAME=DIR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from preprocess.inspect_cache import main as inspect_main
from tests.corpus import write_shards
from tests.preprocess.helpers import run_cli

NAMES = ("wiki", "news", "social")


def _build(capsys, tok: Path, cache: Path, train: dict[str, Path], *more: str) -> None:
    spec = ",".join(f"{n}={d}" for n, d in train.items())
    rc, _, err = run_cli(capsys, "--tokenizer_name_or_path", tok, "--train_dir", spec, "--datasets_cache_dir", cache,
                         "--max_seq_length", "32", "--num_workers", "1", *more)
    assert rc == 0, err


@pytest.fixture
def named(capsys, tmp_path, wordpiece_dir) -> tuple[Path, dict[str, Path]]:
    """A cache of three named corpora, each with a held-out validation split: six splits."""
    dirs = {n: tmp_path / "text" / n for n in NAMES}
    for seed, d in enumerate(dirs.values()):
        write_shards(d, n_shards=2, lines_per_shard=40, seed=seed)
    _build(capsys, wordpiece_dir, tmp_path / "cache", dirs, "--validation_split_percentage", "20")
    return tmp_path / "cache", dirs


def _inspect(capsys, *args) -> tuple[int, str, str]:
    rc = inspect_main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _compared(out: str) -> list[tuple[str, str]]:
    """The (a, b) split dirs diff compared, from its ``--- A`` / ``+++ B`` header lines."""
    lines = out.splitlines()
    return [(x[4:], y[4:]) for x, y in zip(lines, lines[1:]) if x.startswith("--- ") and y.startswith("+++ ")]


def test_diff_of_two_identical_named_caches_pairs_corpus_with_corpus_and_exits_0(capsys, named, tmp_path):
    cache, _ = named
    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    rc, out, err = _inspect(capsys, "diff", cache, copy)
    pairs = [(f"{n}/{s}", f"{n}/{s}") for n in NAMES for s in ("train", "validation")]
    assert _compared(out) == [(str(cache / "corpora" / x), str(copy / "corpora" / y)) for x, y in pairs]
    assert rc == 0 and out.count("no differences") == 6 and not err


def test_diff_reports_a_corpus_on_one_side_only_and_exits_1(capsys, named, tmp_path):
    cache, _ = named
    fewer = tmp_path / "fewer"  # the cache as a run that named only wiki and news left it
    shutil.copytree(cache, fewer)
    shutil.rmtree(fewer / "corpora" / "social")
    (fewer / "corpora.json").write_text(json.dumps({"corpora": ["wiki", "news"]}))
    rc, out, _ = _inspect(capsys, "diff", cache, fewer)
    assert rc == 1 and out.count("no differences") == 4
    assert [a for a, _ in _compared(out)] == [str(cache / "corpora" / n / s) for n in NAMES[:2]
                                              for s in ("train", "validation")]
    assert f"corpus social: only in {cache} ({cache / 'corpora' / 'social'})" in out.splitlines()
    rc, out, _ = _inspect(capsys, "diff", fewer, cache)
    assert rc == 1 and f"corpus social: only in {cache} ({cache / 'corpora' / 'social'})" in out.splitlines()
    # the same corpora listed in another order: ties in the blend go to the corpus listed first
    (fewer / "corpora.json").write_text(json.dumps({"corpora": ["news", "wiki"]}))
    shutil.rmtree(cache / "corpora" / "social")
    (cache / "corpora.json").write_text(json.dumps({"corpora": ["wiki", "news"]}))
    rc, out, _ = _inspect(capsys, "diff", cache, fewer)
    assert rc == 1 and 'corpora: ["wiki", "news"] -> ["news", "wiki"]' in out.splitlines()


def test_diff_of_a_named_and_an_unnamed_cache_is_one_line(capsys, named, tmp_path):
    cache, dirs = named
    rc, out, err = _inspect(capsys, "diff", cache, cache / "corpora" / "wiki")  # a corpus's dir: unnamed layout
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {cache} holds named corpora (wiki, news, social)") and "give two split dirs" in err
    assert _inspect(capsys, "diff", cache / "corpora" / "wiki", cache / "corpora" / "wiki" / "train")[0] == 0


def test_status_input_dir_name_dir_checks_that_corpus_only(capsys, named, tmp_path):
    cache, dirs = named
    moved = tmp_path / "moved_news"
    shutil.copytree(dirs["news"], moved)
    shutil.rmtree(dirs["news"])
    rc, out, _ = _inspect(capsys, "status", cache, "--input_dir", f"news={moved}")
    assert rc == 0, out  # every corpus fresh: news where it is now, the others where the manifests say
    heads = [x for x in out.splitlines() if x.startswith("== ")]
    assert heads == [f"== {cache / 'corpora' / n / s} against {moved if n == 'news' else dirs[n]}"
                     for n in NAMES for s in ("train", "validation")]
    (moved / "new.txt").write_text("a new shard\n")
    rc, out, _ = _inspect(capsys, "status", cache, "--input_dir", f"news={moved}")
    assert rc == 1 and out.count("  added     new.txt") == 2 and out.count("0 added") == 4


def test_status_input_dir_keeps_a_separate_eval_split_on_its_own_dir(capsys, tmp_path, wordpiece_dir):
    text = tmp_path / "text"
    for seed, n in enumerate(("a", "a_eval", "b", "b_eval")):
        write_shards(text / n, n_shards=1, lines_per_shard=30, seed=seed)
    cache = tmp_path / "cache"
    _build(capsys, wordpiece_dir, cache, {"a": text / "a", "b": text / "b"},
           "--eval_dir", f"a={text / 'a_eval'},b={text / 'b_eval'}")
    moved = tmp_path / "moved_a"
    shutil.copytree(text / "a", moved)
    rc, out, _ = _inspect(capsys, "status", cache, "--input_dir", f"a={moved}")
    assert rc == 0 and f"== {cache / 'corpora' / 'a' / 'validation'} against {text / 'a_eval'}" in out
    # a split dir given alone is checked against the dir given, whichever split it is
    rc, out, _ = _inspect(capsys, "status", cache / "corpora" / "a" / "validation", "--input_dir", moved)
    assert rc == 1 and "against " + str(moved) in out


def test_status_input_dir_errors_on_a_named_cache_are_one_line(capsys, named, tmp_path):
    cache, dirs = named
    for value, says in [
        (str(dirs["news"]), f"error: --input_dir {dirs['news']}: {cache} holds named corpora (wiki, news, social); "
                            f"name the corpus whose text is there: --input_dir NAME={dirs['news']} (several: "
                            "NAME=DIR,NAME2=DIR2; a corpus not named is checked against the dirs its manifests "
                            "record)"),
        (f"nwes={dirs['news']}", f"error: --input_dir nwes={dirs['news']}: {cache} has no corpus 'nwes'; its "
                                 "corpora: wiki, news, social"),
        (f"news={dirs['news']}", None),
    ]:
        rc, out, err = _inspect(capsys, "status", cache, "--input_dir", value)
        if says is None:
            assert rc == 0 and not err
            continue
        assert rc == 2 and not out and err.strip().splitlines() == [says]
    rc, out, err = _inspect(capsys, "status", cache / "corpora" / "news" / "train", "--input_dir",
                            f"news={dirs['news']}")
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1
    assert "is not a named cache" in err and f"--input_dir {dirs['news']}" in err


def test_diff_of_two_caches_reports_a_split_on_one_side_only(capsys, named, tmp_path):
    cache, _ = named
    one = tmp_path / "one"  # the same corpus's cache without its validation split (unnamed layout)
    shutil.copytree(cache / "corpora" / "news", one)
    shutil.rmtree(one / "validation")
    rc, out, _ = _inspect(capsys, "diff", cache / "corpora" / "news", one)
    assert rc == 1 and out.count("no differences") == 1
    assert f"split validation: only in {cache / 'corpora' / 'news'} ({cache / 'corpora' / 'news' / 'validation'})" in out
    other = tmp_path / "other"  # a named cache whose news lacks it
    shutil.copytree(cache, other)
    shutil.rmtree(other / "corpora" / "news" / "validation")
    rc, out, _ = _inspect(capsys, "diff", other, cache)
    assert rc == 1 and out.count("no differences") == 5
    assert out.splitlines()[-1] == f"split news/validation: only in {cache} ({cache / 'corpora' / 'news' / 'validation'})"
