"""Speed in the training logs (train/throughput.py), through mlm-train: the keys in stdout, TensorBoard and
trainer_state.json, real tokens only, tokens_seen across a resume, model FLOPs against a counted real step."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback

import train.run as run_module
from preprocess.__main__ import main as preprocess
from tests.corpus import EN
from tests.train import record
from tests.train.conftest import build_cache
from train.__main__ import main
from train.throughput import table_peak

KEYS = ("tokens_per_second", "samples_per_second", "tflops_per_second", "mfu", "seconds_left", "tokens_seen")


def _argv(tok: Path, cache: Path, out: Path, *extra: str, length: int = 32) -> list[str]:
    return ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", str(length),
            "--architecture", "roberta-tiny", "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "2", "--max_steps", "6", "--logging_steps", "2", "--save_strategy", "no",
            "--report_to", "none", "--input_check", "off", "--seed", "3", "--max_eval_samples", "8", *extra]


def _train(argv: list[str], monkeypatch, callbacks=()) -> list:
    """mlm-train's main with ``callbacks`` given to the Trainer; the trainers it built."""
    original, trainers = run_module.train, []

    def train(*args, **kwargs):
        metrics, trainer = original(*args, **{**kwargs, "callbacks": [*(kwargs.get("callbacks") or []), *callbacks]})
        trainers.append(trainer)
        return metrics, trainer

    monkeypatch.setattr(run_module, "train", train)
    assert main(argv) == 0
    return trainers


def _history(out: Path) -> list[dict]:
    return [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]


@pytest.fixture(scope="module")
def logged(tmp_path_factory, bpe_dir, bpe_cache):
    """One run on the CPU with --peak_tflops and TensorBoard: its stdout and output dir."""
    out = tmp_path_factory.mktemp("speed") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.MonkeyPatch.context() as mp:
        _train(_argv(bpe_dir, bpe_cache, out, "--peak_tflops", "0.5", "--report_to", "tensorboard",
                     "--logging_dir", str(out / "tb")), mp)
    return stdout.getvalue(), out


def test_every_training_log_line_carries_the_speed_keys(logged):
    stdout, out = logged
    lines = [ast.literal_eval(s[s.index("{"):]) for s in stdout.replace("\r", "\n").splitlines() if "'loss'" in s]
    assert len(lines) == 3  # steps 2, 4, 6
    for line in lines:
        assert set(KEYS) <= set(line), line
    history = _history(out)
    assert [h["step"] for h in history] == [2, 4, 6]
    for h in history:
        assert h["tokens_per_second"] > 0 and h["tflops_per_second"] > 0
        assert h["mfu"] == pytest.approx(100 * h["tflops_per_second"] / 0.5)  # against --peak_tflops
    assert history[-1]["seconds_left"] == 0 and history[0]["seconds_left"] >= 0
    assert 0 < history[0]["tokens_seen"] < history[1]["tokens_seen"] < history[2]["tokens_seen"]


def test_tensorboard_holds_the_same_scalars(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out = logged
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    history = {h["step"]: h for h in _history(out)}
    for key in KEYS:
        scalars = {e.step: e.value for e in events.Scalars(f"train/{key}")}
        assert scalars.keys() == history.keys()
        assert all(scalars[s] == pytest.approx(history[s][key], rel=1e-6) for s in scalars), key


def test_tokens_are_the_real_ones_of_the_trained_batches(tmp_path, bpe_dir, monkeypatch):
    """Line-by-line blocks at 128: short lines padded to 64 or 128. tokens_seen is the sum of the attention
    masks of every batch trained, and tokens/s over samples/s their mean per sample in each interval."""
    cache = build_cache(tmp_path / "c", bpe_dir, 128)
    monkeypatch.setattr(record, "RECORDED", [])
    record.install(monkeypatch.setattr)
    out = tmp_path / "out"
    _train(_argv(bpe_dir, cache, out, "--datasets_type", "MemmapLineByLineTextDataset", length=128), monkeypatch)
    batches = [b for training, b in record.RECORDED if training]
    assert len(batches) == 12  # 6 steps x 2 micro-batches
    real = [int(b["attention_mask"].sum()) for b in batches]
    assert sum(real) < 0.7 * sum(b["input_ids"].numel() for b in batches)  # padding is a large share here
    for h in _history(out):
        done = batches[: 2 * h["step"]]
        interval = batches[2 * (h["step"] - 2): 2 * h["step"]]
        assert h["tokens_seen"] == sum(real[: len(done)])
        per_sample = sum(int(b["attention_mask"].sum()) for b in interval) / sum(len(b["input_ids"]) for b in interval)
        assert abs(h["tokens_per_second"] - per_sample * h["samples_per_second"]) < 0.501  # tokens/s: whole tokens
        assert "mfu" not in h  # the CPU has no peak without --peak_tflops


@pytest.mark.slow
def test_tokens_seen_goes_on_across_a_resume(tmp_path, bpe_dir, bpe_cache, monkeypatch):
    """Killed after checkpoint-3 (between two logging steps) and resumed: the same tokens_seen at 4, 6, 8."""
    steps = ["--max_steps", "8", "--save_strategy", "steps", "--save_steps", "3"]
    _train(_argv(bpe_dir, bpe_cache, tmp_path / "full", *steps), monkeypatch)
    full = {h["step"]: h["tokens_seen"] for h in _history(tmp_path / "full")}
    assert 0 < full[2] < full[4] < full[6] < full[8]
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-3", cut / "checkpoint-3")
    _train(_argv(bpe_dir, bpe_cache, cut, *steps, "--resume_from_checkpoint", str(cut / "checkpoint-3")), monkeypatch)
    resumed = {h["step"]: h["tokens_seen"] for h in _history(cut) if h["step"] > 3}  # step 2's came with the state
    assert sorted(resumed) == [4, 6, 8] and resumed == {s: full[s] for s in (4, 6, 8)}


class CountStep(TrainerCallback):
    """Counts the matmul FLOPs of one optimizer step (its micro-batches' forward and backward) as it runs."""

    def __init__(self, step: int):
        self.step, self.counter, self.flops = step, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            self.flops, self.counter = self.counter.get_total_flops(), None


def test_flops_per_token_agree_with_a_counted_training_step(tmp_path, bpe_dir, monkeypatch):
    """Blocks all 32 tokens (pieces of long lines, in sequential order), so the step computes no padding;
    --mlm_probability 0.125 sizes the head at 4 rows a block for 3.75 masked. Counting the head at every
    position (+40%), leaving out attention (-10%) or the backward pass (-67%) fails this."""
    text = tmp_path / "text"
    text.mkdir()
    for k in range(2):
        words = [EN[(7 * i + k) % len(EN)] for i in range(600)]  # 20 full blocks, then a short one
        (text / f"long_{k}.txt").write_text(" ".join(words) + "\n")
    cache = tmp_path / "cache"
    assert preprocess(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(text), "--datasets_cache_dir",
                       str(cache), "--max_seq_length", "32", "--num_workers", "1"]) == 0
    monkeypatch.setattr(record, "RECORDED", [])
    record.install(monkeypatch.setattr)
    counted = CountStep(2)
    trainers = _train(_argv(bpe_dir, cache, tmp_path / "out", "--max_steps", "2", "--train_sampling_strategy",
                            "sequential", "--mlm_probability", "0.125"), monkeypatch, callbacks=[counted])
    step = [b for training, b in record.RECORDED if training][2:4]
    assert all(bool(b["attention_mask"].all()) for b in step) and step[0]["input_ids"].shape[1] == 32
    tokens = sum(int(b["attention_mask"].sum()) for b in step)
    estimate = trainers[0].speed.flops.per_token_at(32, 0.125) * tokens
    assert counted.flops == pytest.approx(estimate, rel=0.05)


@pytest.mark.parametrize(("name", "mode", "expected"), [
    ("NVIDIA H100 80GB HBM3", "bf16", ("H100 SXM", 989.4)),
    ("NVIDIA H100 PCIe", "bf16", ("H100 PCIe", 756.5)),
    ("NVIDIA H100 NVL", "tf32", ("H100 NVL", 417.5)),
    ("NVIDIA H200", "fp16", ("H200 SXM", 989.4)),
    ("NVIDIA A100-SXM4-80GB", "tf32", ("A100", 156.0)),
    ("NVIDIA A10G", "bf16", ("A10G", 70.0)),
    ("NVIDIA A10", "bf16", ("A10", 125.0)),
    ("NVIDIA L40S", "bf16", ("L40S", 362.05)),
    ("NVIDIA L40", "fp32", ("L40", 90.5)),
    ("NVIDIA L4", "bf16", ("L4", 121.0)),
    ("Tesla V100-SXM2-16GB", "fp16", ("V100 SXM2", 125.0)),
    ("Tesla V100-PCIE-32GB", "tf32", ("V100 PCIe", 14.0)),  # no tf32: fp32 matmuls at the fp32 peak
    ("Tesla V100-SXM2-16GB", "bf16", ("V100 SXM2", None)),
    ("NVIDIA GeForce RTX 4090", "bf16", ("RTX 4090", 165.2)),
    ("Some Future GPU", "bf16", None),
])
def test_the_peak_table_matches_device_names(name, mode, expected):
    assert table_peak(name, mode) == expected


def test_a_peak_of_zero_is_one_line(capsys, tmp_path, bpe_dir, bpe_cache):
    assert main(_argv(bpe_dir, bpe_cache, tmp_path / "out", "--peak_tflops", "0")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --peak_tflops 0") and "above 0" in err[0]


@pytest.mark.slow
def test_two_processes_count_both_ranks_tokens_and_rank_0_writes_the_card(tmp_path, bpe_dir, bpe_cache):
    """torchrun on CPU (gloo): tokens_seen after 2 steps of 2 ranks is 1 process's after 4 steps (the same
    samples in the same order); one card, by rank 0; no DDP warning about unused parameters (there are none)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    seen = {}
    for procs, steps in ((1, 4), (2, 2)):
        out = tmp_path / f"p{procs}"
        argv = _argv(bpe_dir, bpe_cache, out, "--max_steps", str(steps), "--gradient_accumulation_steps", "1",
                     "--logging_steps", "1", "--disable_tqdm", "true")
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "-m",
                            "train", *argv], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-4000:]
        assert "find_unused_parameters" not in r.stderr and "model card was not written" not in r.stderr
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        seen[procs] = [h["tokens_seen"] for h in history if "tokens_seen" in h][-1]
        card = (out / "README.md").read_text()
        assert f"| tokens seen | {seen[procs]:,} |" in card and f"CPU, {procs} process" in card
    assert seen[2] == seen[1] > 0


@pytest.mark.parametrize("strategy", ["random", "group_by_length"])
def test_each_corpus_s_tokens_are_the_tokens_of_the_blocks_the_order_drew_from_it(strategy):
    """Blocks of 10 ids in one corpus and 1,000 in the other: a token given to the wrong corpus shows at once."""
    import numpy as np

    from train.order import Corpus, DataOrder
    from train.throughput import StreamSums

    short, long = np.full(50, 10, dtype=np.int64), np.full(30, 1000, dtype=np.int64)
    order = DataOrder([Corpus("short", short, 0), Corpus("long", long, 50)], [0.6, 0.4], strategy, 3, 8)
    sums = StreamSums(order)
    first, last = 5, 40_000  # across chunks, not from 0
    drawn = order.blocks(first, last - first)
    from_long = int((drawn >= 50).sum())
    total = sums(first, last)
    assert total[0] == total[3] + total[4] and total[4] == 1000 * from_long and total[3] == 10 * (len(drawn) - from_long)
    assert 0.3 < from_long / len(drawn) < 0.6  # both corpora drawn: the split above was a real one
