"""Sliced builds (--num_slices/--slice): any number of slices, run at once or killed and rerun, then a
commit, give the cache a single run gives, byte for byte; the shared cache dir stays safe."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.corpus import write_shards
from tests.preprocess.helpers import arrays, base_args, manifest, run_cli

ROOT = Path(__file__).parents[2]


def _corpus(d: Path) -> Path:
    write_shards(d, n_shards=9, lines_per_shard=150)  # small shards, grouped into pieces
    write_shards(d.parent / "big", n_shards=1, lines_per_shard=20_000, seed=5)
    (d.parent / "big" / "shard_000.txt").rename(d / "zz_big.txt")  # one shard cut into many tasks
    return d


def _args(tok: Path, train: Path, cache: Path, *more: str) -> list[str]:
    return base_args(tok, train, cache, "--task_size_mb", "0.02", "--validation_split_percentage", "10", *more)


def _cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "preprocess", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


def _identity(cache: Path) -> list:
    out = []
    for split in ("train", "validation"):
        m = manifest(cache, split)
        m.pop("created_by")
        out += [arrays(cache, split), m]
    return out


@pytest.fixture
def reference(tmp_path, wordpiece_dir) -> tuple[Path, list]:
    train = _corpus(tmp_path / "train")
    rc = _cli(_args(wordpiece_dir, train, tmp_path / "single")).wait(timeout=120)
    assert rc == 0
    return train, _identity(tmp_path / "single")


def test_three_slices_at_once_then_a_commit_equal_a_single_run(capsys, tmp_path, wordpiece_dir, reference):
    train, expected = reference
    cache = tmp_path / "cache"
    procs = [_cli(_args(wordpiece_dir, train, cache, "--num_slices", "3", "--slice", str(k))) for k in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outs]
    assert all("slice" in o[0] and "to commit" in o[0] for o in outs)
    assert not (cache / "train" / "manifest.json").exists()  # slices never commit
    assert sorted(p.name for p in (cache / "train" / "slices").iterdir()) == ["0-of-3.json", "1-of-3.json",
                                                                          "2-of-3.json"]
    t0 = time.perf_counter()
    rc, out, err = run_cli(capsys, *_args(wordpiece_dir, train, cache))
    assert rc == 0, err
    assert "0 tokenized, 0 repacked" in out and "pieces were built by slices (3 of 3 slices" in err
    assert time.perf_counter() - t0 < 10
    assert _identity(cache) == expected
    assert not (cache / "train" / "slices").exists()  # the next plain run is an ordinary rerun


def test_a_slice_killed_midway_and_rerun_gives_the_same_cache(capsys, tmp_path, wordpiece_dir, reference):
    train, expected = reference
    cache = tmp_path / "cache"
    slice_args = [_args(wordpiece_dir, train, cache, "--num_slices", "3", "--slice", str(k)) for k in range(3)]
    victim = _cli(slice_args[1], start_new_session=True)
    others = [_cli(slice_args[k]) for k in (0, 2)]
    deadline = time.time() + 60
    while time.time() < deadline and not any(f".{victim.pid}." in p.name for p in cache.rglob("*")):
        time.sleep(0.02)  # until it writes a temp file: mid-piece
    assert victim.poll() is None, "the slice ended before it could be killed midway"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert all(p.wait(timeout=120) == 0 for p in others)
    # a commit now names the slice that did not finish, then tokenizes what it left
    probe = tmp_path / "probe"
    import shutil

    shutil.copytree(cache, probe)
    rc, out, err = run_cli(capsys, *_args(wordpiece_dir, train, probe))
    assert rc == 0 and ("slice 1 of 3 should have built them" in err or "(2 of 3 slices" in err), err
    assert _identity(probe) == expected
    assert _cli(slice_args[1]).wait(timeout=120) == 0  # the killed slice, rerun
    rc, out, err = run_cli(capsys, *_args(wordpiece_dir, train, cache))
    assert rc == 0 and "0 tokenized" in out, err
    assert _identity(cache) == expected
    assert not [p for p in cache.rglob("*") if ".tmp-" in p.name or ".spill-" in p.name]


def test_a_slurm_array_task_fills_in_its_slice(capsys, monkeypatch, tmp_path, wordpiece_dir):
    train = _corpus(tmp_path / "train")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    rc, out, err = run_cli(capsys, *_args(wordpiece_dir, train, tmp_path / "c"))
    assert rc == 0 and "slice 1 of 2" in out and "from the Slurm array" in err, err
    assert (tmp_path / "c" / "train" / "slices" / "1-of-2.json").is_file()
    rc, out, err = run_cli(capsys, *_args(wordpiece_dir, train, tmp_path / "c", "--num_slices", "1"))
    assert rc == 0 and (tmp_path / "c" / "train" / "manifest.json").is_file()  # --num_slices 1: the commit


@pytest.mark.parametrize("env,said", [
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_STEP": "two"},
     "SLURM_ARRAY_TASK_STEP='two': not an integer"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "0"}, "the Slurm array gives slice 0 of 0"),
    ({}, "--num_slices 3 needs --slice K: the slice this run builds, from 0 to 2"),
])
def test_slice_settings_that_cannot_be_are_named_exactly(capsys, monkeypatch, tmp_path, wordpiece_dir, env, said):
    write_shards(tmp_path / "train", n_shards=2, lines_per_shard=20)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    more = [] if env else ["--num_slices", "3"]
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "train", tmp_path / "c", *more))
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1 and said in lines[0], err  # no "note: slice 0 of 0" before it


def test_a_commit_beside_running_slices_and_a_slice_beside_a_commit_are_refused(capsys, tmp_path, wordpiece_dir):
    train = _corpus(tmp_path / "train")
    cache = tmp_path / "cache"
    cache.mkdir()
    fd = os.open(cache / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a slice is running
        rc, _, err = run_cli(capsys, *_args(wordpiece_dir, train, cache))
        assert rc == 2 and "slices of a sliced build" in err
        rc, _, err = run_cli(capsys, *_args(wordpiece_dir, train, cache, "--num_slices", "2", "--slice", "0"))
        assert rc == 0, err  # another slice may run beside it
        fcntl.flock(fd, fcntl.LOCK_EX)  # a commit is running
        rc, _, err = run_cli(capsys, *_args(wordpiece_dir, train, cache, "--num_slices", "2", "--slice", "1"))
        assert rc == 2 and "being committed" in err
    finally:
        os.close(fd)
    rc, _, err = run_cli(capsys, *_args(wordpiece_dir, train, cache, "--num_slices", "2", "--slice", "3"))
    assert rc == 2 and "--slice 3" in err


def test_cleanup_keeps_a_live_writers_temp_files_from_other_hosts(capsys, tmp_path, wordpiece_dir, corpus):
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, corpus, cache))[0] == 0
    pieces = cache / "train" / "pieces"
    name = "0123456789abcdef0123456789abcdef.tokens.npy.tmp-"
    live_remote = pieces / f"{name}othernode.4242.0a0b0c0d"
    dead_remote = pieces / f"{name}othernode.4243.0a0b0c0e"
    from common.format import writer_id

    dead_here = pieces / f".spill-{writer_id().rpartition('.')[0]}.999999-1.tokens"
    for p in (live_remote, dead_remote, dead_here):
        p.write_bytes(b"x")
    os.utime(dead_remote, (time.time() - 7200, time.time() - 7200))
    (corpus / "shard_000.txt").write_text("changed\n")  # a run with work, then cleanup
    assert run_cli(capsys, *base_args(wordpiece_dir, corpus, cache))[0] == 0
    assert live_remote.exists() and not dead_remote.exists() and not dead_here.exists()


def test_overwrite_cache_in_slices_and_commit_tokenizes_once(capsys, tmp_path, wordpiece_dir):
    train = _corpus(tmp_path / "train")
    cache = tmp_path / "cache"
    assert run_cli(capsys, *_args(wordpiece_dir, train, cache))[0] == 0  # an old build to overwrite
    for k in range(2):
        rc, out, err = run_cli(capsys, *_args(wordpiece_dir, train, cache, "--overwrite_cache", "--num_slices", "2",
                                              "--slice", str(k)))
        assert rc == 0 and re.search(r"[1-9][0-9,]* shards? tokenized", out), err
    rc, out, err = run_cli(capsys, *_args(wordpiece_dir, train, cache, "--overwrite_cache"))
    assert rc == 0 and "0 tokenized" in out, (out, err)  # the slices' pieces are this build's: kept


def test_slices_of_a_split_of_several_formats_equal_a_single_run(capsys, tmp_path, wordpiece_dir):
    """--ext txt,jsonl.zst,parquet: each slice reads each file by its own extension, pieces that mix
    formats included, and the commit gives the single run's cache."""
    from tests.corpus import make_lines
    from tests.preprocess.test_formats import MIXED, documents, write_docs

    text = tmp_path / "t"
    for k, (stem, ext) in enumerate(MIXED.items()):
        write_docs(text / f"{stem}.{ext}", documents(seed=k, n=60), ext)
    for k, ext in enumerate(["txt", "jsonl.zst", "parquet"] * 3):  # small files: grouped, formats mixed
        write_docs(text / f"small_{k}.{ext}", make_lines(20, seed=10 + k), ext)

    def args(cache: Path, *more: str) -> list[str]:
        return _args(wordpiece_dir, text, cache, "--ext", "txt,jsonl.zst,parquet", *more)

    rc, _, err = run_cli(capsys, *args(tmp_path / "single"))
    assert rc == 0, err
    m = manifest(tmp_path / "single")
    first, kinds = 0, []
    for p in m["pieces"]:
        kinds.append({s["path"].split(".", 1)[1] for s in m["shards"][first : first + p["shards"]]})
        first += p["shards"]
    assert any(len(k) > 1 for k in kinds)  # a piece holds files of several formats
    for k in range(2):
        rc, _, err = run_cli(capsys, *args(tmp_path / "c", "--num_slices", "2", "--slice", str(k)))
        assert rc == 0, err
    rc, out, err = run_cli(capsys, *args(tmp_path / "c"))
    assert rc == 0 and "0 tokenized" in out, err
    assert _identity(tmp_path / "c") == _identity(tmp_path / "single")
