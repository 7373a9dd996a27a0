"""A line far longer than a task is encoded in open ranges: the same ids as whole, memory bounded by the task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.tree_rss import TreeRss
from tests.corpus import make_lines
from tests.preprocess.helpers import base_args, lines_of, manifest, run_cli

ROOT = Path(__file__).parents[2]


def _giant_corpus(d: Path, words: int) -> list[str]:
    d.mkdir()
    giant = " ".join(make_lines(words // 20 + 1, seed=9, max_words=40))  # one line, English and Thai words
    before, after = make_lines(30, seed=1), make_lines(30, seed=2)
    (d / "a.txt").write_text("\n".join([*before, "  " + giant + "  ", *after]) + "\n")
    (d / "b.txt").write_text("\n".join(after) + "\n")
    return [*before, giant, *after, *after]


@pytest.mark.parametrize("tok", ["wordpiece_dir", "bpe_dir"])
def test_a_giant_line_cut_into_tasks_gives_the_ids_of_the_whole_line(capsys, request, tmp_path, tok):
    tok_dir = request.getfixturevalue(tok)
    text = tmp_path / "text"
    expected = _giant_corpus(text, 40_000)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli(capsys, *base_args(tok_dir, text, whole))[0] == 0
    rc, out, _ = run_cli(capsys, *base_args(tok_dir, text, cut, "--task_size_mb", "0.004"))  # ~4 KB ranges
    assert rc == 0
    assert [x.tolist() for x in lines_of(cut)] == [x.tolist() for x in lines_of(whole)]
    assert len(lines_of(cut)) == len(expected)
    m = manifest(cut)
    assert [s["lines"] for s in m["shards"]] == [61, 30] and m["totals"]["lines"] == len(expected)
    assert m["shards"] == [{**s, "path": s["path"]} for s in manifest(whole)["shards"]]  # same counts and hist
    # the cut positions are part of the key: a rerun with another task size re-tokenizes the giant line
    rc, out, _ = run_cli(capsys, *base_args(tok_dir, text, cut, "--task_size_mb", "0.008"))
    assert rc == 0 and "1 shard reused, 1 tokenized" in out


@pytest.mark.slow
def test_a_50_mb_single_line_stays_under_1_gb_of_rss(tmp_path, wordpiece_dir):
    text = tmp_path / "text"
    text.mkdir()
    words = " ".join(make_lines(200, seed=4, max_words=40)).encode()
    with open(text / "giant.txt", "wb") as f:
        while f.tell() < 50 << 20:
            f.write(words + b" ")
        f.write(b"\n")
    cmd = [sys.executable, "-m", "preprocess", *base_args(wordpiece_dir, text, tmp_path / "cache")]
    cmd[cmd.index("--num_workers") + 1] = "2"
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    with TreeRss(p.pid) as rss:
        out, err = p.communicate(timeout=900)
    print(f"peak RSS of the preprocess tree on a 50 MB line: {rss.peak_sum / 2**20:.0f} MiB")
    assert p.returncode == 0, err.decode()[-2000:]
    assert rss.peak_sum < 1 << 30, f"peak RSS {rss.peak_sum / 2**20:.0f} MiB"
    assert b"1 line," in out and manifest(tmp_path / "cache")["totals"]["lines"] == 1


@pytest.mark.parametrize("tok", ["wordpiece_dir", "bpe_dir"])
def test_a_line_encoded_in_pieces_has_the_ids_of_the_whole_line(request, tok):
    from transformers import AutoTokenizer

    from preprocess.encoder import ENCODE_CHARS, encode_bounded, reference_encoder

    encode = reference_encoder(AutoTokenizer.from_pretrained(request.getfixturevalue(tok)))
    line = " ".join(make_lines(3000, seed=5, max_words=40))
    assert len(line) > 2 * ENCODE_CHARS
    assert encode_bounded(encode, ["short one", line, "x"]) == encode(["short one", line, "x"])


@pytest.mark.parametrize("tok", ["wordpiece_dir", "bpe_dir"])
def test_cr_only_files_and_runs_of_spaces_cut_like_whole_lines(capsys, request, tmp_path, tok):
    """Old Mac files (\\r only, blank lines too) are cut at their line ends; a giant line is cut before a
    run of spaces, never inside one: the ids of every line equal those of the whole file read at once."""
    tok_dir = request.getfixturevalue(tok)
    text = tmp_path / "text"
    text.mkdir()
    words = " ".join(make_lines(400, seed=6, max_words=30))
    (text / "mac.txt").write_bytes(((words[:2094] + "x\r\rnext line\r") * 3).encode())
    (text / "runs.txt").write_text("first\n" + words.replace(" ", "      ") + "   \nlast\n")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli(capsys, *base_args(tok_dir, text, whole))[0] == 0
    assert run_cli(capsys, *base_args(tok_dir, text, cut, "--task_size_mb", "0.001"))[0] == 0
    assert [x.tolist() for x in lines_of(cut)] == [x.tolist() for x in lines_of(whole)]
    assert manifest(cut)["totals"]["lines"] == 6 + 3
