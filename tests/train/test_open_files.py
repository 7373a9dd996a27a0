"""A cache of any number of pieces is read within the process's open-file limit (issue 20): a bounded
pool of descriptors, least recently used closed first, and one error line where nothing can be opened."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from common import open_files
from common.cli import run_command
from common.errors import UserError, words
from common.format import FormatError
from common.reader import SplitReader
from preprocess.__main__ import main as preprocess_main
from tests.corpus import write_shards
from tests.train.test_preemption import ENV, ROOT, losses, train_args


def build_pieces(tmp_path, tok, n_shards: int, lines: int = 12):
    """A cache where every shard is a piece of its own (``--task_size_mb 0.002``: shards over 1 KB)."""
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=n_shards, lines_per_shard=lines)
    assert preprocess_main(["--tokenizer_name_or_path", str(tok), "--train_dir", str(text), "--datasets_cache_dir",
                            str(cache), "--max_seq_length", "32", "--num_workers", "2", "--task_size_mb", "0.002"]) == 0
    return cache


@contextlib.contextmanager
def every_descriptor_taken():
    """Every descriptor the process has left, holes below the limit included, taken by "something else"
    while the block runs; given back after it."""
    taken = []
    try:
        while True:
            taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    try:
        yield
    finally:
        for fd in taken:
            os.close(fd)


def expected_blocks(r: SplitReader) -> list[list[int]]:
    """Every block assembled from whole arrays read into memory: what block(i) must return."""
    out = []
    for k in range(len(r.manifest.pieces)):
        tokens = r.tokens(k)
        out += [[r.bos, *tokens[s:e].tolist(), r.eos] for s, e in r.block_index(k).tolist()]
    return out


@pytest.fixture
def small_pool(monkeypatch):
    """This process's pool replaced by one of 3 descriptors; the old one back afterwards."""
    pool = open_files.OpenFiles()
    pool.limit = 3
    monkeypatch.setattr(open_files, "_POOL", pool)
    yield pool
    pool.close()


@pytest.fixture
def nofile(request):
    """Set the soft RLIMIT_NOFILE for one test, restored after it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield lambda soft: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_random_reads_over_many_pieces_stay_within_the_pool_and_return_the_right_blocks(tmp_path, bpe_dir,
                                                                                       small_pool):
    r = SplitReader(build_pieces(tmp_path, bpe_dir, 30) / "train")
    assert len(r.manifest.pieces) == 30
    want = expected_blocks(r)
    fds_before = open_files.open_count()
    for i in np.random.default_rng(0).integers(0, r.n_blocks, 2000).tolist():
        assert r.block(i).tolist() == want[i]
        assert len(small_pool) <= 3
    assert open_files.open_count() <= fds_before + 3
    r.close()
    assert len(small_pool) == 0


def test_out_of_descriptors_the_pool_shrinks_and_reading_goes_on(tmp_path, bpe_dir, monkeypatch, nofile):
    r = SplitReader(build_pieces(tmp_path, bpe_dir, 30) / "train")
    want = expected_blocks(r)
    pool = open_files.OpenFiles()
    pool.limit = 10_000  # a budget set before something else took the descriptors
    monkeypatch.setattr(open_files, "_POOL", pool)
    try:
        nofile(open_files.open_count() + 8)
        for i in range(r.n_blocks):
            assert r.block(i).tolist() == want[i]
        assert 1 <= pool.limit < 8
    finally:
        pool.close()


def test_with_no_descriptor_left_the_error_names_the_limit_to_raise(tmp_path, bpe_dir, monkeypatch, nofile):
    r = SplitReader(build_pieces(tmp_path, bpe_dir, 2) / "train")
    monkeypatch.setattr(open_files, "_POOL", open_files.OpenFiles())
    nofile(open_files.open_count() + 16)
    with every_descriptor_taken(), pytest.raises(UserError) as e:
        r.block(0)
    assert "open-file limit (ulimit -n" in str(e.value) and "used up" in str(e.value)
    assert "ulimit -n 65536" in str(e.value)


def test_the_budget_leaves_a_quarter_of_the_limit_to_the_rest_of_the_process(nofile):
    nofile(1024)
    assert open_files.budget() == 1024 - open_files.open_count() - 256


class _Failing(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        raise UserError("the cache file x is damaged; rebuild it")


def test_an_error_in_a_dataloader_worker_is_one_line_without_its_traceback(capsys):
    def body() -> int:
        for _ in DataLoader(_Failing(), num_workers=1):
            pass
        return 0

    assert run_command(body, "") == 2
    err = capsys.readouterr().err
    assert err == "error: the cache file x is damaged; rebuild it\n"
    with pytest.raises(UserError) as e:
        body()
    assert "Traceback" in str(e.value) and words(e.value) == "the cache file x is damaged; rebuild it"


@pytest.mark.slow
def test_a_cache_of_1200_pieces_trains_under_ulimit_n_1024_with_the_same_losses(tmp_path, bpe_dir):
    cache = build_pieces(tmp_path, bpe_dir, 1200, lines=10)
    n_pieces = len(SplitReader(cache / "train").manifest.pieces)
    assert n_pieces > 1100  # 2 files a piece: past the limit if each stayed open
    got, notes = {}, {}
    # ulimit -n sets the soft and the hard limit: nothing to raise; -S -n only the soft one: raised, with a note
    for name, limit in (("free", None), ("limited", "-n 1024"), ("soft only", "-S -n 1024")):
        out = tmp_path / name.replace(" ", "_")
        cmd = [sys.executable, "-m", "train", *train_args(bpe_dir, cache, out, "--max_steps", "6",
                                                            "--dataloader_num_workers", "2")]
        if limit:
            cmd = ["bash", "-c", f'ulimit {limit} && exec "$@"', "bash", *cmd]
        r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Too many open files" not in r.stderr and "Traceback" not in r.stderr
        got[name], notes[name] = losses(out), "note: open-file limit raised from 1,024" in r.stderr
    assert len(got["free"]) == 6 and got["limited"] == got["free"] == got["soft only"]
    assert not notes["limited"] and notes["soft only"]  # ("free": whatever this machine's limits are)


def test_a_header_damaged_in_place_is_one_error_line_from_a_worker_and_the_run_exits(tmp_path, bpe_dir):
    """The start-up check compares sizes; a header altered without a change of size is found where a
    DataLoader worker first opens the file: one line, and the process ends (workers ignore SIGTERM, so
    multiprocessing's exit, which sends SIGTERM and waits, hung it before)."""
    cache = build_pieces(tmp_path, bpe_dir, 4)
    for tokens in (cache / "train" / "pieces").glob("*.tokens.npy"):
        data = tokens.read_bytes()
        assert b"'<u2'" in data[:128]
        tokens.write_bytes(data.replace(b"'<u2'", b"'<i2'", 1))
    cmd = [sys.executable, "-m", "train", *train_args(bpe_dir, cache, tmp_path / "out", "--max_steps", "2",
                                                        "--dataloader_num_workers", "2")]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tokens.npy: expected" in errors[0] and "int16" in errors[0]
    assert "Traceback" not in r.stderr


def test_a_file_truncated_after_it_was_opened_is_a_format_error_not_wrong_ids(tmp_path, bpe_dir):
    r = SplitReader(build_pieces(tmp_path, bpe_dir, 2) / "train")
    last = r.n_blocks - 1
    assert len(r.block(last)) > 2  # opened and checked
    tokens = r.split_dir / r.manifest.pieces[r.piece_of(last)].files["tokens"].path
    os.truncate(tokens, tokens.stat().st_size - 4)
    with pytest.raises(FormatError, match="shorter than its manifest records.*--overwrite_cache"):
        r.block(last)
    r.close()


def test_a_file_deleted_after_start_up_is_a_format_error_naming_it(tmp_path, bpe_dir):
    r = SplitReader(build_pieces(tmp_path, bpe_dir, 2) / "train")
    tokens = r.split_dir / r.manifest.pieces[0].files["tokens"].path
    tokens.unlink()
    with pytest.raises(FormatError, match=f"{tokens.name}: missing; rerun preprocessing"):
        r.block(0)


def test_out_of_descriptors_with_one_file_in_the_pool_it_closes_that_one_and_opens(tmp_path, nofile, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    pool = open_files.OpenFiles()
    pool.limit = 100
    monkeypatch.setattr(open_files, "_POOL", pool)
    pool.fd(str(a))
    nofile(open_files.open_count() + 16)
    try:
        with every_descriptor_taken():
            assert os.pread(pool.fd(str(b)), 1, 0) == b"b"  # it looped forever once
    finally:
        pool.close()
    assert pool.limit == 1
