"""Damage found under a running job is one error line, never handed to the model.

A token file overwritten in place with garbage of the same size passes every
stat the start-up check makes; the ids it then holds lie past the
vocabulary, where an embedding fails with an IndexError deep in torch. The
reader checks each block's ids against the vocabulary it reads them for.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.format import FormatError
from common.manifest import load_manifest
from common.reader import SplitReader
from tests.train.conftest import build_cache

ROOT = Path(__file__).parents[2]


def _garble(split: Path) -> list[Path]:
    """Every token file of ``split`` overwritten in place, after its header, with 0xFF bytes: same size,
    same header, ids at the top of the dtype's range."""
    m = load_manifest(split)
    out = []
    for piece in m.pieces:
        info = piece.files["tokens"]
        path = split / info.path
        data_bytes = int(np.prod(info.shape)) * np.dtype(info.dtype).itemsize
        with open(path, "r+b") as f:
            f.seek(path.stat().st_size - data_bytes)
            f.write(b"\xff" * data_bytes)
        out.append(path)
    return out


def test_an_id_past_the_vocabulary_is_a_format_error_naming_the_file(tmp_path, bpe_dir):
    cache = build_cache(tmp_path, bpe_dir)
    reader = SplitReader(cache / "train")
    assert reader.block(0).max() < reader.vocab_size
    garbled = _garble(cache / "train")
    with pytest.raises(FormatError, match="at or past the vocabulary size") as e:
        reader.block(0)
    assert str(garbled[0]) in str(e.value) and "mlm-inspect verify" in str(e.value)


@pytest.mark.parametrize("workers", [0, 2])
def test_garbage_written_under_a_running_job_is_one_error_line(tmp_path, bpe_dir, workers):
    cache = build_cache(tmp_path, bpe_dir)
    args = [sys.executable, "-m", "train", "--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir",
            str(cache), "--max_seq_length", "32", "--architecture", "roberta-tiny", "--output_dir",
            str(tmp_path / "out"), "--max_steps", "100000", "--per_device_train_batch_size", "2",
            "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no",  # its progress bar on
            "--dataloader_num_workers", str(workers)]
    job = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in job.stdout:  # wait until it trains
            if "'loss'" in line:
                break
        garbled = _garble(cache / "train")
        start = time.monotonic()
        _, err = job.communicate(timeout=120)
    finally:
        job.kill()
    assert job.returncode == 2, err[-2000:]
    assert time.monotonic() - start < 60
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert "at or past the vocabulary size" in errors[0]
    assert any(str(p) in errors[0] for p in garbled)
    assert f"mlm-inspect verify {cache / 'train'}" in errors[0]
    fix = errors[0].split("(from any directory): ", 1)[1]
    assert "--verify_outputs" in fix
    (tmp_path / "elsewhere").mkdir()
    pasted = subprocess.run(fix, shell=True, cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert pasted.returncode == 0, pasted.stderr
    verify = subprocess.run([sys.executable, "-m", "preprocess.inspect_cache", "verify", str(cache)], cwd=ROOT,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout
