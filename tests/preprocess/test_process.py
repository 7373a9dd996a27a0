"""The command as a separate process: no torch, --help, crash safety under SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.corpus import write_shards
from tests.preprocess.helpers import arrays, base_args
from tests.preprocess.helpers import base_args as helpers_base_args

NO_TORCH = (
    "import sys; sys.modules['torch'] = None  # any 'import torch' now raises ImportError\n"
    "from preprocess.__main__ import main\n"
    "rc = main(sys.argv[1:])\n"
    "assert sys.modules.get('torch') is None, 'torch was imported'\n"
    "sys.exit(rc)\n"
)


def _run(args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, **kw)


def test_preprocess_runs_where_torch_cannot_be_imported(tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=2)
    args = base_args(wordpiece_dir, train, tmp_path / "cache")
    args[args.index("--num_workers") + 1] = "2"
    r = _run([sys.executable, "-c", NO_TORCH, *args])
    assert r.returncode == 0, r.stderr
    assert "train: 0 shards reused, 2 tokenized" in r.stdout
    assert "tokenizing 2 shards" in r.stderr  # the progress bar


def test_help_explains_every_flag():
    r = _run([sys.executable, "-m", "preprocess", "--help"])
    assert r.returncode == 0
    for flag in ["--tokenizer_name_or_path", "--tokenizer_type", "--ext", "--train_dir", "--eval_dir",
                 "--max_seq_length", "--datasets_cache_dir", "--datasets_type", "--add_space_token",
                 "--overwrite_cache", "--num_workers"]:
        assert flag in r.stdout
    assert "all cores by default" in r.stdout


def _kill_when(cmd: list[str], cache: Path, records: int) -> None:
    """Start the CLI and SIGKILL it once ``records`` pieces are complete."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if len(list((cache / "train" / "pieces").glob("*.json"))) >= records:
            break
        time.sleep(0.02)
    assert p.poll() is None, "the run finished before it could be killed: make the corpus bigger"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


@pytest.mark.slow
def test_sigkill_midway_then_rerun_equals_a_clean_build(tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=12, lines_per_shard=4000)
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    cli = [sys.executable, "-m", "preprocess"]

    def base_args(*a):  # each shard a piece of its own: the kill lands between pieces
        return helpers_base_args(*a, "--task_size_mb", "0.01")

    assert _run([*cli, *base_args(wordpiece_dir, train, clean)]).returncode == 0

    # first build killed midway: no manifest, so nothing looks valid
    _kill_when([*cli, *base_args(wordpiece_dir, train, crashed)], crashed, records=3)
    assert not (crashed / "train" / "manifest.json").exists()
    r = _run([*cli, *base_args(wordpiece_dir, train, crashed)])
    assert r.returncode == 0, r.stderr
    assert " reused, " in r.stdout and "0 shards reused" not in r.stdout  # resumed, not restarted
    assert arrays(crashed) == arrays(clean)
    assert not [p for p in (crashed / "train").rglob("*") if ".tmp-" in p.name]

    # an update killed midway: the old manifest stays, and every file it names is intact
    old = json.loads((crashed / "train" / "manifest.json").read_text())
    for p in paths:
        p.write_text(p.read_text() + "one more line\n")
    _kill_when([*cli, *base_args(wordpiece_dir, train, crashed)], crashed, records=12 + 3)
    assert json.loads((crashed / "train" / "manifest.json").read_text()) == old
    for s in old["pieces"]:
        for f in [*s["files"].values(), s["blocks"]["file"]]:
            assert (crashed / "train" / f["path"]).stat().st_size == f["bytes"]
    assert _run([*cli, *base_args(wordpiece_dir, train, crashed)]).returncode == 0
    assert _run([*cli, *base_args(wordpiece_dir, train, clean)]).returncode == 0
    assert arrays(crashed) == arrays(clean)


def test_make_preprocess_target(tmp_path, wordpiece_dir):
    train, ev = tmp_path / "train", tmp_path / "eval"
    write_shards(train, n_shards=2)
    write_shards(ev, n_shards=1, seed=7)
    cache = tmp_path / "cache"
    r = _run(["make", "-s", "-C", str(Path(__file__).parents[2]), "preprocess", f"VENV={sys.prefix}",
              f"TRAIN_DIR={train}", f"EVAL_DIR={ev}", f"TOKENIZER={wordpiece_dir}", "TOKENIZER_TYPE=auto",
              f"CACHE_DIR={cache}", "MAX_SEQ_LENGTH=48", "NUM_WORKERS=2"])
    assert r.returncode == 0, r.stderr
    for split in ("train", "validation"):
        m = json.loads((cache / split / "manifest.json").read_text())
        assert m["parameters"]["max_seq_length"] == 48
