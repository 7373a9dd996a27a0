"""The benchmarks still run end to end (small sizes; the numbers are the benchmarks' business)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run_bench(script: str, *args: object) -> str:
    """stdout of ``bench/<script> args`` run as a user runs it, after it exited 0."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / script), *map(str, args)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_gpu_train_smoke_runs_on_cpu(tmp_path):
    out = run_bench("gpu_train.py", "--smoke", "--out", tmp_path / "g")
    assert "| ours |" in out and "| defaults |" in out


@pytest.mark.slow
def test_dataloader_bench_runs_small(tmp_path):
    out = run_bench("dataloader.py", "--mb", 3, "--batches", 10, "--warmup", 2, "--repeats", 1, "--workers", 0,
                    "--out", tmp_path / "d")
    assert "identical first masked batch from both: yes" in out


@pytest.mark.slow
def test_train_cpu_bench_runs_small(tmp_path):
    out = run_bench("train_cpu.py", "--smoke", "--out", tmp_path / "t")
    assert "masked-only head vs dense head" in out and "pad share" in out and "host cost" in out


@pytest.mark.slow
def test_mixture_bench_runs_small(tmp_path):
    out = run_bench("mixture.py", "--smoke", "--out", tmp_path / "m")
    assert "| 600,000 |" in out and "datasets.interleave_datasets" in out and "fails" not in out


@pytest.mark.slow
def test_train_quality_bench_runs_small(tmp_path):
    out = run_bench("train_quality.py", "--smoke", "--out", tmp_path / "q")
    assert "a. plain transformers recipe" in out and "c. mlm-train defaults" in out and "± " in out
    assert "d. mlm-train --mlm_probability_schedule" in out and "e. mlm-train --architecture modernbert-tiny" in out
    assert "| whole words, 15% | 32 |" in out  # the head-size table


@pytest.mark.slow
def test_small_files_bench_runs_small():
    out = run_bench("small_files.py", "--smoke")
    assert "| 1 file |" in out and "one piece per file" in out and "no-op rerun" in out


@pytest.mark.slow
def test_formats_bench_runs_small(tmp_path):
    out = run_bench("formats_bench.py", "--smoke", "--out", tmp_path / "f")
    assert "| .txt |" in out and "| .parquet |" in out and "| .jsonl.zst |" in out
    assert "identical token arrays to .txt in every format: yes" in out
    assert "peak PSS" in out


@pytest.mark.slow
def test_nodes_bench_runs_small(tmp_path):
    import os

    if not os.environ.get("CI"):  # CI installs the ray extra: there a missing Ray fails
        pytest.importorskip("ray")
    out = run_bench("nodes_bench.py", "--smoke", "--out", tmp_path / "n")
    assert "byte-identical caches from all three executors: yes" in out
    for row in ("| local 2 workers |", "| Ray 2 nodes x 1 CPU |", "| 2 slices + commit |"):
        assert row in out


@pytest.mark.slow
def test_pieces_bench_runs_small(tmp_path):
    out = run_bench("pieces.py", "--smoke", "--before", "HEAD", "--out", tmp_path / "p")
    rows = [line for line in out.splitlines() if line.startswith("| 1,200 (")]
    assert len(rows) == 2 and not any("fails" in r for r in rows)  # 1,200 pieces read under ulimit -n 1024


@pytest.mark.slow
def test_tokenizer_train_bench_runs_small(tmp_path):
    out = run_bench("tokenizer_train.py", "--smoke", "--out", tmp_path / "t")
    assert "| bpe | 0.15 MB |" in out and "| newmm | 0.15 MB |" in out and "| 10x the sample |" in out
    assert "| bpe | 0.6 MB |" in out  # the large row: --large_families bpe under --smoke
    assert ", 0 / 0 MiB" not in out  # memory from a sampled run of each side, the times from unsampled ones
    assert re.search(r"\| bpe \| 0\.6 MB \|.*\| [+-]\d+\.\d\d s \|", out)  # ours less the library, in seconds
    assert "same sample digest as ours' training.json for every family that finished: yes" in out
    assert "no tokenizer" not in out and "fails" not in out
