"""Named corpora are one cache, checked as one: shared text is refused across corpora, a stale or
mismatched cache is one error with one command for all of it, an interrupted first build is known for
what it is by every command, and corpora.json is checked."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preprocess.__main__ import main as preprocess_main
from preprocess.inspect_cache import main as inspect_main
from tests.corpus import write_shards
from train.__main__ import main as train_main

ROOT = Path(__file__).parents[2]
HOUR_AGO_NS = 3600 * 10**9


def _age(d: Path) -> None:
    """Every file of ``d`` last written an hour ago, as text usually is (no racily clean shard)."""
    for p in d.rglob("*"):
        if p.is_file():
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_AGO_NS))


def _texts(root: Path) -> dict[str, Path]:
    dirs = {"docs": root / "docs", "jargon": root / "jargon", "plays": root / "plays"}
    for seed, d in enumerate(dirs.values()):
        write_shards(d, n_shards=2, lines_per_shard=60, seed=seed + 1)
        _age(d)
    return dirs


def _preprocess(tok: Path, cache: Path, train: str, *flags: str) -> int:
    return preprocess_main(["--tokenizer_name_or_path", str(tok), "--train_dir", train, "--datasets_cache_dir",
                            str(cache), "--max_seq_length", "32", "--num_workers", "1", *flags])


def _train_args(tok: Path, cache: Path, out: Path, *flags: str, length: int = 32) -> list[str]:
    return ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", str(length),
            "--architecture", "roberta-tiny", "--output_dir", str(out), "--max_steps", "1",
            "--per_device_train_batch_size", "4", "--save_strategy", "no", "--report_to", "none", *flags]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def _paste(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """The printed command run by a shell in another directory, as a user pastes it."""
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})


def _command(line: str) -> str:
    return line.split("(from any directory): ", 1)[1]


def _without_type(command: str) -> list[str]:
    """A command's words but --tokenizer_type's value (mlm-train says the type it was given, mlm-inspect the one
    the cache recorded: the same tokenizer either way)."""
    words = shlex.split(command)
    return [w for k, w in enumerate(words) if k == 0 or words[k - 1] != "--tokenizer_type"]


def _spec(dirs: dict[str, Path]) -> str:
    return ",".join(f"{n}={d}" for n, d in dirs.items())


# --- 1. one cache, checked as one -----------------------------------------------------------------------------


def test_an_eval_dir_that_is_another_corpus_s_training_text_is_refused(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, f"a={dirs['docs']},b={dirs['jargon']}", "--eval_dir",
                       f"b={dirs['docs']}") == 2
    [line] = _errors(capsys)
    assert "--eval_dir b=... is training text of corpus a" in line
    assert not (cache / "corpora.json").exists() and not (cache / "corpora").exists()


@pytest.mark.parametrize("how", ["same", "nested", "symlink", "hardlinked file"])
def test_one_dir_in_two_corpora_is_refused(capsys, tmp_path, bpe_dir, how):
    dirs = _texts(tmp_path / "text")
    a = dirs["docs"]
    if how == "same":
        b = a
    elif how == "nested":
        b = a / "sub"
        write_shards(b, n_shards=1, lines_per_shard=20, seed=7)
    elif how == "symlink":
        b = tmp_path / "link"
        b.symlink_to(a)
    else:
        b = dirs["jargon"]
        os.link(next(a.glob("*.txt")), b / "linked.txt")
    flags = ["--recursive"] if how == "nested" else []
    assert _preprocess(bpe_dir, tmp_path / "cache", f"a={a},b={b}", *flags) == 2
    [line] = _errors(capsys)
    assert "--train_dir a=... and b=... share text" in line and "give each corpus its own dirs" in line


def test_a_cache_whose_corpora_share_text_is_refused_at_train(capsys, tmp_path, bpe_dir):
    """A cache built before preprocess refused it: training finds the shared shards by their digests."""
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, f"a={dirs['docs']}") == 0
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in dirs["docs"].glob("*.txt"):
        (copy / p.name).write_bytes(p.read_bytes())  # a copy, not a link: no dir check can see it
    _age(copy)
    assert _preprocess(bpe_dir, cache, f"b={copy}") == 0
    (cache / "corpora.json").write_text(json.dumps({"corpora": ["a", "b"]}))  # as a build before the check left it
    capsys.readouterr()
    assert train_main(_train_args(bpe_dir, cache, tmp_path / "out")) == 2
    [line] = _errors(capsys)
    assert "corpora a and b both train on the same text" in line


# --- 2. one error, one fix, for the whole cache ----------------------------------------------------------------


def test_a_stale_named_cache_is_one_error_and_one_pasted_command_fixes_it(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, _spec(dirs), "--validation_split_percentage", "10") == 0
    shard = sorted(dirs["docs"].glob("*.txt"))[0]
    shard.write_text(shard.read_text() + "an edited line of the docs\n")
    (dirs["jargon"] / "added.txt").write_text("a new file of jargon\n" * 5)
    _age(dirs["docs"])
    _age(dirs["jargon"])
    capsys.readouterr()
    args = _train_args(bpe_dir, cache, tmp_path / "out")
    assert train_main(args) == 2
    [line] = _errors(capsys)
    assert "2 of its 3 corpora cannot be trained on as they are (docs, jargon)" in line
    assert "1 changed" in line and "1 added (added.txt)" in line
    assert inspect_main(["status", str(cache)]) == 1  # sees both stale corpora and prints the same command
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert _without_type(_command(printed)) == _without_type(_command(line))
    (tmp_path / "elsewhere").mkdir()
    pasted = _paste(_command(line), tmp_path / "elsewhere")
    assert pasted.returncode == 0, pasted.stderr
    assert train_main(args) == 0, capsys.readouterr().err


def test_a_cache_packed_for_another_length_offers_both_ways(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, _spec(dirs)) == 0
    capsys.readouterr()
    args = _train_args(bpe_dir, cache, tmp_path / "out", length=64)
    assert train_main(args) == 2
    [line] = _errors(capsys)
    assert "3 of its 3 corpora" in line and "pass --max_seq_length 32" in line
    command = _command(line)
    assert "--max_seq_length 64" in command and "docs=" in command and "plays=" in command
    (tmp_path / "elsewhere").mkdir()
    assert _paste(command, tmp_path / "elsewhere").returncode == 0
    assert train_main(args) == 0, capsys.readouterr().err


def test_a_tokenizer_mismatch_names_both_tokenizers(capsys, tmp_path, bpe_dir, wordpiece_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, _spec(dirs)) == 0
    capsys.readouterr()
    assert train_main(_train_args(wordpiece_dir, cache, tmp_path / "out")) == 2
    [line] = _errors(capsys)
    assert f"built with the tokenizer {bpe_dir}" in line and f"this run loads {wordpiece_dir}" in line
    assert f"pass --tokenizer_name_or_path {bpe_dir}" in line
    command = _command(line)
    assert shlex.split(command)[shlex.split(command).index("--tokenizer_name_or_path") + 1] == str(wordpiece_dir)


# --- 6. an interrupted first build; corpora.json checked --------------------------------------------------------


def test_a_first_named_build_cut_short_is_finished_by_every_command_s_hint(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    moved = tmp_path / "not_yet"
    dirs["plays"].rename(moved)  # the last corpus fails: the first two are built, corpora.json is not written
    assert _preprocess(bpe_dir, cache, _spec(dirs), "--validation_split_percentage", "10") == 2
    assert (cache / "corpora" / "jargon" / "train" / "manifest.json").is_file()
    assert not (cache / "corpora.json").exists()
    moved.rename(dirs["plays"])
    capsys.readouterr()
    assert train_main(_train_args(bpe_dir, cache, tmp_path / "out")) == 2
    [line] = _errors(capsys)
    assert "whose first build did not finish" in line
    assert inspect_main(["verify", str(cache)]) == 2
    [verify_line] = _errors(capsys)
    assert _command(verify_line) == _command(line)
    assert _preprocess(bpe_dir, cache, str(dirs["docs"])) == 2  # the unnamed rebuild the old hint offered
    [unnamed] = _errors(capsys)
    assert _command(unnamed) == _command(line)
    assert not (cache / "train").exists()
    (tmp_path / "elsewhere").mkdir()
    pasted = _paste(_command(line), tmp_path / "elsewhere")
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads((cache / "corpora.json").read_text()) == {"corpora": list(dirs)}
    assert not (cache / "corpora.pending.json").exists()
    assert train_main(_train_args(bpe_dir, cache, tmp_path / "out")) == 0


def test_a_sigkill_during_the_first_named_build_leaves_a_cache_every_command_knows(tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    for n in range(6):  # enough text that the build is still running when killed
        write_shards(dirs["plays"] / f"more{n}", n_shards=1, lines_per_shard=3000, seed=n)
    cache = tmp_path / "cache"
    job = subprocess.Popen([sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(bpe_dir),
                            "--train_dir", _spec(dirs), "--recursive", "--datasets_cache_dir", str(cache),
                            "--max_seq_length", "32", "--num_workers", "1"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (cache / "corpora" / "docs" / "train" / "manifest.json").exists() and job.poll() is None:
        time.sleep(0.01)
    job.kill()
    job.wait()
    if (cache / "corpora.json").exists():
        pytest.skip("the build finished before the kill")
    run = subprocess.run([sys.executable, "-m", "train", *_train_args(bpe_dir, cache, tmp_path / "out")], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "whose first build did not finish" in run.stderr, run.stderr[-2000:]
    command = _command(run.stderr.strip().splitlines()[-1])
    assert "--recursive" in command and "docs=" in command and "plays=" in command
    (tmp_path / "elsewhere").mkdir()
    assert _paste(command, tmp_path / "elsewhere").returncode == 0
    assert json.loads((cache / "corpora.json").read_text()) == {"corpora": list(dirs)}


@pytest.mark.parametrize("content, words", [('{"corpora": []}', "lists no corpus"),
                                            ('{"corpora": ["docs", "docs"]}', "lists docs twice"),
                                            ('{"corpora": ["docs", "Docs.EN"]}', "'Docs.EN' is not a corpus name"),
                                            ("[]", 'not {"corpora": [names]}'), ("garbage{", "unreadable")])
def test_a_damaged_corpora_json_is_one_line_and_preprocess_rewrites_it(capsys, tmp_path, bpe_dir, content, words):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, _spec(dirs)) == 0
    (cache / "corpora.json").write_text(content)
    capsys.readouterr()
    assert inspect_main(["verify", str(cache)]) == 2
    assert train_main(_train_args(bpe_dir, cache, tmp_path / "out")) == 2
    lines = _errors(capsys)
    assert len(lines) == 2 and all(f"{cache / 'corpora.json'}: {words}" in line for line in lines)
    assert _preprocess(bpe_dir, cache, _spec(dirs)) == 0  # the command the message names does rewrite it
    assert json.loads((cache / "corpora.json").read_text()) == {"corpora": list(dirs)}


def test_mlm_train_with_named_dirs_on_a_cache_not_built_yet_prints_the_named_build(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    args = _train_args(bpe_dir, cache, tmp_path / "out", "--train_dir", _spec(dirs))
    assert train_main(args) == 2
    [line] = _errors(capsys)
    assert "holds no named corpora yet" in line
    (tmp_path / "elsewhere").mkdir()
    pasted = _paste(_command(line), tmp_path / "elsewhere")
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads((cache / "corpora.json").read_text()) == {"corpora": list(dirs)}
    assert train_main(args) == 0, capsys.readouterr().err


def test_a_build_without_validation_text_retires_the_old_validation_split(capsys, tmp_path, bpe_dir):
    """Left in place, it was evaluated on though its text had become training text (exit 0, no word)."""
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, f"a={dirs['docs']},b={dirs['jargon']}", "--eval_dir", f"b={dirs['plays']}") == 0
    assert (cache / "corpora" / "b" / "validation" / "manifest.json").is_file()
    capsys.readouterr()
    assert _preprocess(bpe_dir, cache, f"a={dirs['docs']},b={dirs['jargon']},{dirs['plays']}") == 0
    assert "removed the validation split of the previous build" in capsys.readouterr().err
    assert not (cache / "corpora" / "b" / "validation" / "manifest.json").exists()
    assert not list((cache / "corpora" / "b" / "validation").rglob("*.npy"))
    assert train_main(_train_args(bpe_dir, cache, tmp_path / "out", "--eval_strategy", "steps")) == 2
    assert "none of the corpora" in _errors(capsys)[0]
    held = tmp_path / "held"  # unnamed, held out, then not
    assert _preprocess(bpe_dir, held, str(dirs["docs"]), "--validation_split_percentage", "10") == 0
    assert _preprocess(bpe_dir, held, str(dirs["docs"])) == 0
    assert not (held / "validation" / "manifest.json").exists()


def test_stale_text_beside_a_length_mismatch_is_one_error_and_one_round(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, _spec(dirs)) == 0
    shard = sorted(dirs["docs"].glob("*.txt"))[0]
    shard.write_text(shard.read_text() + "an edited line\n")
    _age(dirs["docs"])
    capsys.readouterr()
    args = _train_args(bpe_dir, cache, tmp_path / "out", length=64)
    assert train_main(args) == 2
    [line] = _errors(capsys)
    assert "1 changed" in line and "packed for --max_seq_length 32" in line
    assert "pass --max_seq_length 32" not in line  # it alone would not do: the text moved on too
    (tmp_path / "elsewhere").mkdir()
    assert _paste(_command(line), tmp_path / "elsewhere").returncode == 0
    assert train_main(args) == 0, capsys.readouterr().err


def test_a_cache_at_two_lengths_offers_no_length_that_would_fail(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, _spec(dirs)) == 0
    assert preprocess_main(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(dirs["docs"]),
                            "--datasets_cache_dir", str(cache / "corpora" / "docs"), "--max_seq_length", "64",
                            "--num_workers", "1"]) == 0  # as a repack cut short leaves it: docs at 64, the rest at 32
    capsys.readouterr()
    for length, affected in (("32", "(docs)"), ("64", "(jargon, plays)")):
        args = _train_args(bpe_dir, cache, tmp_path / "out", length=int(length))
        assert train_main(args) == 2
        [line] = _errors(capsys)
        assert affected in line and "pass --max_seq_length" not in line
        assert f"--max_seq_length {length}" in _command(line)


def test_byte_identical_copies_in_two_corpora_are_refused_by_preprocess(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in dirs["docs"].glob("*.txt"):
        (copy / p.name).write_bytes(p.read_bytes())
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, f"a={dirs['docs']},b={copy}") == 2
    assert "corpora a and b both train on the same text" in _errors(capsys)[0]
    assert not (cache / "corpora.json").exists()
    assert _preprocess(bpe_dir, cache, f"a={dirs['docs']},b={dirs['jargon']}", "--eval_dir", f"b={copy}") == 2
    assert "the validation text of corpus b is training text of corpus a" in _errors(capsys)[0]


def test_mlm_train_refuses_named_dirs_that_share_text(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    args = _train_args(bpe_dir, cache, tmp_path / "out", "--train_dir", f"a={dirs['docs']},b={dirs['docs']}")
    assert train_main(args) == 2  # no cache yet: it would print a build that preprocess refuses
    assert "share text" in _errors(capsys)[0]
    assert _preprocess(bpe_dir, cache, f"docs={dirs['docs']},jargon={dirs['jargon']}") == 0
    capsys.readouterr()
    args = _train_args(bpe_dir, cache, tmp_path / "out", "--eval_dir", f"docs={dirs['jargon']}")
    assert train_main(args) == 2
    [line] = _errors(capsys)
    assert "--eval_dir docs=... is training text of corpus jargon" in line


def test_status_prints_no_command_that_preprocess_would_refuse(capsys, tmp_path, bpe_dir):
    dirs = _texts(tmp_path / "text")
    cache = tmp_path / "cache"
    assert _preprocess(bpe_dir, cache, f"docs={dirs['docs']},jargon={dirs['jargon']}") == 0
    capsys.readouterr()
    assert inspect_main(["status", str(cache), "--input_dir", f"docs={dirs['jargon']}"]) == 2
    assert "share text" in _errors(capsys)[0]
