"""--executor ray: a 2-node x 1-CPU Ray cluster on loopback gives the cache a local run gives, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.preprocess.test_formats import documents, write_docs
from tests.preprocess.test_slices import _args, _corpus, _identity

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def _ray():
    """Ray, or a skip where it is not installed; CI installs the extra, so there a missing Ray fails."""
    if os.environ.get("CI"):
        import ray

        return ray
    return pytest.importorskip("ray")


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-m", "preprocess", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def cluster():
    _ray()
    from ray.cluster_utils import Cluster

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray swaps 127.0.0.1 for a routable address
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    yield c
    c.shutdown()


def test_ray_on_two_nodes_gives_the_cache_of_a_local_run(tmp_path, wordpiece_dir, cluster):
    train = _corpus(tmp_path / "train")
    write_docs(train / "zz_stream.txt.gz", documents(), "txt.gz")  # not read: --ext txt
    local = _run(_args(wordpiece_dir, train, tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    r = _run([*_args(wordpiece_dir, train, tmp_path / "ray"), "--executor", "ray", "--ray_address", cluster.address])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "on Ray" in r.stderr
    assert _identity(tmp_path / "ray") == _identity(tmp_path / "local")
    assert not [p for p in (tmp_path / "ray").rglob("*") if ".spill-" in p.name or ".tmp-" in p.name]


def test_ray_reads_compressed_shards_in_chunks_like_a_local_run(tmp_path, wordpiece_dir, cluster):
    text = tmp_path / "text"
    for k in range(3):
        write_docs(text / f"part{k}.jsonl.zst", documents(seed=k), "jsonl.zst")
    args = ["--ext", "jsonl.zst", "--task_size_mb", "0.01"]
    from tests.preprocess.helpers import base_args

    local = _run([*base_args(wordpiece_dir, text, tmp_path / "local"), *args])
    assert local.returncode == 0, local.stderr
    # relative paths, as a user types them: a Ray worker's working dir is not the driver's
    r = _run([*base_args(os.path.relpath(wordpiece_dir, tmp_path), "text", "ray"), *args, "--executor", "ray",
              "--ray_address", cluster.address], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    from tests.preprocess.helpers import arrays

    assert arrays(tmp_path / "ray") == arrays(tmp_path / "local")


def test_a_ray_worker_killed_mid_run_is_retried_and_the_cache_is_the_same(tmp_path, wordpiece_dir, cluster):
    import re
    import signal
    import time

    train = _corpus(tmp_path / "train")
    local = _run(_args(wordpiece_dir, train, tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    cache = tmp_path / "ray"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    p = subprocess.Popen([sys.executable, "-m", "preprocess", *_args(wordpiece_dir, train, cache), "--executor", "ray",
                          "--ray_address", cluster.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and p.poll() is None:
        for f in cache.rglob(".spill-*"):
            m = re.search(r"\.(\d+)-\d+\.tokens$", f.name)
            if m and int(m.group(1)) != p.pid:
                victim = int(m.group(1))
                break
        time.sleep(0.01)
    assert victim is not None, "no Ray worker wrote a chunk file before the run ended"
    os.kill(victim, signal.SIGKILL)  # a worker lost mid-run, as on a node failure
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert _identity(cache) == _identity(tmp_path / "local")


def test_an_unreachable_ray_address_is_one_line_at_once(tmp_path, wordpiece_dir):
    _ray()
    import time

    from tests.corpus import write_shards

    write_shards(tmp_path / "t", n_shards=1, lines_per_shard=10)
    t = time.monotonic()
    r = _run(["--tokenizer_name_or_path", str(wordpiece_dir), "--train_dir", str(tmp_path / "t"), "--datasets_cache_dir",
              str(tmp_path / "c"), "--executor", "ray", "--ray_address", "127.0.0.1:1"])
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr  # Ray itself retried every 30 s, for ever
    assert lines[0].startswith("error: --ray_address 127.0.0.1:1: nothing answers there")
    assert time.monotonic() - t < 10


def test_sigterm_during_a_ray_run_is_our_line_and_status_and_leaves_no_temp_file(tmp_path, wordpiece_dir):
    _ray()
    import signal
    import time

    from tests.corpus import write_shards

    write_shards(tmp_path / "t", n_shards=2, lines_per_shard=30_000)
    cache = tmp_path / "c"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    p = subprocess.Popen([sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(wordpiece_dir),
                          "--train_dir", str(tmp_path / "t"), "--datasets_cache_dir", str(cache), "--executor", "ray",
                          "--num_workers", "2", "--task_size_mb", "0.01"], stderr=subprocess.PIPE, text=True, env=env,
                         cwd=ROOT)
    seen = ""
    while "on Ray" not in seen and p.poll() is None:  # the tasks are running
        seen += p.stderr.read(1)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    err = seen + p.communicate(timeout=120)[1]
    assert p.returncode == 143 and "terminated (SIGTERM)" in err, err[-3000:]  # not Ray's stack dump, status 15
    assert "StackTrace" not in err and "Traceback" not in err
    assert not [f for f in cache.rglob("*") if ".tmp-" in f.name or ".spill-" in f.name]
