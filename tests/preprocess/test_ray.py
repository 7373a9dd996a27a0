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


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-m", "preprocess", *args], capture_output=True, text=True, env=env,
                          timeout=600)


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
    r = _run([*base_args(wordpiece_dir, text, tmp_path / "ray"), *args, "--executor", "ray",
              "--ray_address", cluster.address])
    assert r.returncode == 0, r.stderr[-3000:]
    from tests.preprocess.helpers import arrays

    assert arrays(tmp_path / "ray") == arrays(tmp_path / "local")
