"""The benchmarks still run end to end (small sizes; the numbers are the benchmarks' business)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_gpu_train_smoke_runs_on_cpu(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_train.py"), "--smoke", "--out", str(tmp_path / "g")],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| ours |" in r.stdout and "| defaults |" in r.stdout


@pytest.mark.slow
def test_dataloader_bench_runs_small(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "dataloader.py"), "--mb", "3", "--batches", "10",
                        "--warmup", "2", "--repeats", "1", "--workers", "0", "--out", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "identical first masked batch from both: yes" in r.stdout


@pytest.mark.slow
def test_train_cpu_bench_runs_small(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "train_cpu.py"), "--smoke", "--out", str(tmp_path / "t")],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "masked-only head vs dense head" in r.stdout and "pad share" in r.stdout


@pytest.mark.slow
def test_small_files_bench_runs_small():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "small_files.py"), "--smoke"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| 1 file |" in r.stdout and "one piece per file" in r.stdout and "no-op rerun" in r.stdout
