"""What --output_dir's checkpoints give a run: ``latest`` on every rank, rotation to --save_total_limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.checkpoints import DELETING, FINISHED_MARK, checkpoints, last_checkpoint, plan_start, resume_hint, rotate


def _checkpoint(out: Path, step: int, state: bool = True) -> Path:
    """A checkpoint dir as the Trainer writes it; ``state=False``: killed before its last file, trainer_state.json."""
    d = out / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "optimizer.pt").write_bytes(b"optimizer")
    if state:
        (d / FINISHED_MARK).write_text(json.dumps({"global_step": step}))
    return d


@pytest.mark.parametrize("rank", [0, 1])
def test_latest_is_the_newest_checkpoint_with_its_state_on_every_rank(tmp_path, rank):
    """Only rank 0 removes an incomplete checkpoint before choosing; the other ranks choose among what is there,
    so a choice that skipped only the deleted dirs would send them to a checkpoint without its state."""
    out = tmp_path / "out"
    _checkpoint(out, 2)
    good = _checkpoint(out, 4)
    _checkpoint(out, 6, state=False)
    start = plan_start(str(out), "latest", False, None, may_delete=rank == 0)
    assert start.resume == str(good)
    assert (out / "checkpoint-6").is_dir() == (rank != 0)  # rank 0 deletes it; the others leave it to rank 0
    assert last_checkpoint(out) == good and str(good) in resume_hint(out)  # the interrupt message's too


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_rotation_keeps_exactly_save_total_limit_checkpoints(tmp_path, limit):
    out = tmp_path / "out"
    for step in range(1, 6):  # rotated after each save, as the trainer does
        _checkpoint(out, step)
        rotate(out, limit)
        assert len(checkpoints(out)) == min(step, limit)
    assert [p.name for p in checkpoints(out)] == [f"checkpoint-{s}" for s in range(6 - limit, 6)]
    assert not [p for p in out.iterdir() if p.name.startswith(DELETING)]


def test_rotation_never_deletes_the_best_checkpoint(tmp_path):
    """As transformers' own rotation: at limit 1, the best and the newest (two dirs) when they differ."""
    out = tmp_path / "out"
    best = _checkpoint(out, 1)
    for step in (2, 3):
        _checkpoint(out, step)
        rotate(out, 1, keep=str(best))
    assert [p.name for p in checkpoints(out)] == ["checkpoint-1", "checkpoint-3"]


def test_a_run_saving_every_step_keeps_save_total_limit_checkpoints(tmp_path, bpe_dir, bpe_cache):
    """Through mlm-train: the limit reaches the rotation (train/run.py commits, then rotates)."""
    from train.__main__ import main as train_main

    out = tmp_path / "out"
    assert train_main(["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(bpe_cache),
                       "--max_seq_length", "32", "--architecture", "roberta-tiny", "--output_dir", str(out),
                       "--max_steps", "4", "--per_device_train_batch_size", "4", "--save_steps", "1",
                       "--save_total_limit", "2", "--report_to", "none", "--disable_tqdm", "true"]) == 0
    assert [p.name for p in checkpoints(out)] == ["checkpoint-3", "checkpoint-4"]


@pytest.mark.parametrize("rank", [0, 1])
def test_latest_skips_a_checkpoint_without_weights_on_every_rank_and_deletes_nothing(capsys, tmp_path, rank):
    out = tmp_path / "out"
    good = _checkpoint(out, 2)
    (_checkpoint(out, 4) / "model.safetensors").unlink()  # deleted by hand, to save space
    start = plan_start(str(out), "latest", False, None, may_delete=rank == 0)
    assert start.resume == str(good) and (out / "checkpoint-4" / "optimizer.pt").is_file()
    assert ("skipping" in capsys.readouterr().err) == (rank == 0)  # said once
    assert checkpoints(out) == [good] and last_checkpoint(out) == good and str(good) in resume_hint(out)
