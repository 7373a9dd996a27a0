"""mlm-train-tokenizer's inputs: a list of extensions (text only), and the no-shard hints of a command
without --recursive."""

from __future__ import annotations

import pytest

from preprocess.train_tokenizer import main as train_tokenizer
from tests.corpus import make_lines


def _train(capsys, text, out, *more: str) -> tuple[int, str, str]:
    rc = train_tokenizer(["--type", "newmm", "--train_dir", str(text), "--output_dir", str(out),
                          "--num_workers", "1", *more])
    got = capsys.readouterr()
    return rc, got.out, got.err


def test_a_list_of_text_extensions_is_read(capsys, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text("\n".join(make_lines(50, seed=1)) + "\n")
    (tmp_path / "t" / "b.text").write_text("\n".join(make_lines(50, seed=2)) + "\n")
    rc, out, err = _train(capsys, tmp_path / "t", tmp_path / "tok", "--ext", "txt,.text")
    assert rc == 0, err
    assert "from 2 shards" in out


@pytest.mark.parametrize("ext, says", [
    ("txt,parquet", "--ext parquet: mlm-train-tokenizer reads uncompressed text shards only"),
    ("jsonl.zst,txt", "--ext jsonl.zst: mlm-train-tokenizer reads uncompressed text shards only"),
    ("txt,parquet.gz", "--ext parquet.gz: Parquet compresses inside the file"),
])
def test_a_list_with_a_format_it_cannot_read_is_its_one_line_error(capsys, tmp_path, ext, says):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text("one line\n")
    rc, out, err = _train(capsys, tmp_path / "t", tmp_path / "tok", "--ext", ext)
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "tok").exists()


@pytest.mark.parametrize("name, says", [
    ("sub/a.txt", "no *.txt files (only in its subdirectories, e.g. sub/: this command reads only the files "
                  "directly in the dir: pass that subdirectory)"),
    ("sub/a.parquet", "no *.txt files (only its subdirectories have files, e.g. sub/, 1 *.parquet file: to read "
                      "it, pass a subdirectory as the dir, with --ext parquet)"),
])
def test_no_shard_hint_never_suggests_recursive_which_it_does_not_have(capsys, tmp_path, name, says):
    (tmp_path / "t" / name).parent.mkdir(parents=True)
    (tmp_path / "t" / name).write_text("one line\n")
    rc, out, err = _train(capsys, tmp_path / "t", tmp_path / "tok")
    assert rc == 2 and says in err, err
    assert "--recursive" not in err
