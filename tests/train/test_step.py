"""What a training step asks of a GPU, checked on the CPU: no waits between logging steps, few shapes,
and torch.compile without graph breaks or recompilations beyond those shapes."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoTokenizer, TrainerCallback

from tests.corpus import write_shards
from tests.train.conftest import build_cache, train_with_callbacks
from train.collator import TRAIN_STREAM, MlmCollator, head_rows
from train.config import throughput_defaults
from train.dataset import MemmapConcatFullSentenceTextDataset, MemmapLineByLineTextDataset
from train.order import Corpus, DataOrder

aten = torch.ops.aten
# The operations that make the host wait for a GPU: a value read back (.item(), bool(), float()), a result
# whose size depends on the values (nonzero, masked_select, unique, repeat_interleave without a size).
WAITS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default, aten.nonzero.default,
         aten.masked_select.default, aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
         aten.repeat_interleave.Tensor}


def _waits(func, args) -> bool:
    if func in WAITS:
        return True
    if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):  # x[bool_mask]: a nonzero inside
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
    return False


def _in_data_loader() -> bool:
    """Called from torch's DataLoader (its iterator draws a base seed with .item() on a CPU generator):
    host work on a GPU machine too, on tensors that never live on the GPU."""
    frame = sys._getframe(2)
    while frame is not None:
        if f"torch{os.sep}utils{os.sep}data{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class Waits(TorchDispatchMode, TrainerCallback):
    """Records each waiting operation with the optimizer step it ran in, and whether inside a step
    (on_step_begin .. on_step_end: masking, forward, loss, backward, clipping, optimizer, scheduler) or
    between steps (fetching the next batch, logging, evaluating, saving)."""

    def __init__(self):
        super().__init__()
        self.step, self.inside, self.on, self.seen = 0, False, False, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.on and _waits(func, args) and not _in_data_loader():
            self.seen.append((self.step, self.inside, str(func)))
        return func(*args, **(kwargs or {}))

    def on_train_begin(self, args, state, control, **kw):
        self.on = True

    def on_train_end(self, args, state, control, **kw):
        self.on = False

    def on_step_begin(self, args, state, control, **kw):
        self.step, self.inside = state.global_step + 1, True

    def on_step_end(self, args, state, control, **kw):
        self.inside = False


def _train(tmp_path, tok, cache, *flags: str, callbacks=()) -> None:
    argv = ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", "32",
            "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / "out"), "--per_device_train_batch_size",
            "4", "--gradient_accumulation_steps", "2", "--max_steps", "9", "--logging_steps", "3",
            "--save_strategy", "no", "--report_to", "none", "--input_check", "off", *flags]
    train_with_callbacks(argv, callbacks)


def _gpu_flags() -> list[str]:
    """What mlm-train chooses on a GPU for the step itself (the optimizer, the loss's NaN check)."""
    values, _ = throughput_defaults({}, set(), cuda=True, bf16_ok=False, tf32_ok=False)
    return ["--optim", values["optim"], "--logging_nan_inf_filter", str(values["logging_nan_inf_filter"])]


def test_no_step_waits_for_the_gpu_between_logging_steps(tmp_path, bpe_dir, bpe_cache):
    waits = Waits()
    with waits:
        _train(tmp_path, bpe_dir, bpe_cache, *_gpu_flags(), callbacks=[waits])
    assert waits.seen, "nothing recorded: the recorder is not in place"
    assert [w for w in waits.seen if w[1]] == []  # nothing inside any step
    assert {step for step, _, _ in waits.seen} <= {3, 6, 9}  # between steps only where the loss is logged
    assert {step for step, _, _ in waits.seen} >= {3, 6}  # (where .item() reads it: the recorder sees a wait)


def test_the_recorder_sees_a_wait_inside_the_step(tmp_path, bpe_dir, bpe_cache):
    """The Trainer's default NaN check of every loss reads it on the host: a wait in every step."""
    waits = Waits()
    with waits:
        _train(tmp_path, bpe_dir, bpe_cache, "--optim", "adamw_torch_fused", "--logging_nan_inf_filter", "True",
               callbacks=[waits])
    assert {step for step, inside, _ in waits.seen if inside} == set(range(1, 10))


@pytest.fixture(scope="module")
def cache_512(tmp_path_factory, bpe_dir):
    """Blocks of text-like lengths at 512: whole lines packed, the last block of each piece shorter."""
    from preprocess.__main__ import main as preprocess

    root = tmp_path_factory.mktemp("c512")
    write_shards(root / "text", n_shards=8, lines_per_shard=800)
    assert preprocess(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(root / "text"),
                       "--datasets_cache_dir", str(root / "cache"), "--max_seq_length", "512",
                       "--task_size_mb", "0.02", "--num_workers", "1"]) == 0
    return root / "cache"


@pytest.mark.parametrize("strategy", ["random", "group_by_length"])
def test_an_epoch_at_512_takes_at_most_8_shapes(bpe_dir, cache_512, strategy):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    data = MemmapConcatFullSentenceTextDataset(cache_512 / "train", 512)
    lengths = data.lengths()
    assert len(data) > 100 and lengths.min() < 256 < 448 < lengths.max() and len(set(lengths.tolist())) > 50
    coll = MlmCollator(tok, [tok.bos_token_id, tok.eos_token_id], tok.pad_token_id, max_width=512, head_positions=True)
    order = DataOrder([Corpus("train", lengths, 0)], [1.0], strategy, 0, 8).blocks(0, len(lengths)).tolist()
    shapes = set()
    for first in range(0, len(order), 8):  # the last batch partial, as the Trainer reads it
        batch = coll([(TRAIN_STREAM, g, data[b]) for g, b in enumerate(order[first : first + 8], start=first)])
        shapes.add((tuple(batch["input_ids"].shape), tuple(batch["head_positions"].shape)))
        assert batch["head_positions"].shape[0] == head_rows(*batch["input_ids"].shape, 0.15)
    assert len(shapes) <= 8, sorted(shapes)


def test_torch_compile_has_no_graph_break_and_compiles_once_per_shape(tmp_path, bpe_dir):
    """--torch_compile with the masked-positions head, through mlm-train (dynamo's eager backend on the CPU)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    cache = build_cache(tmp_path / "c", bpe_dir, 128)
    lengths = MemmapLineByLineTextDataset(cache / "train", 128).lengths()  # lines: 64 or 128 wide
    order = DataOrder([Corpus("train", lengths, 0)], [1.0], "random", 42, 8).blocks(0, 4 * 2 * 6)
    widths = {min(-(-int(lengths[order[i : i + 4]].max()) // 64) * 64, 128) for i in range(0, len(order), 4)}
    assert len(widths) == 2  # the batches of these 6 steps take two shapes
    torch._dynamo.reset()
    counters.clear()
    argv_cache = ["--max_seq_length", "128"]
    from train.__main__ import main

    assert main(["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(cache), *argv_cache,
                 "--datasets_type", "MemmapLineByLineTextDataset",
                 "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / "out"),
                 "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--max_steps", "6",
                 "--save_strategy", "no", "--report_to", "none", "--input_check", "off", "--seed", "42",
                 "--torch_compile", "--torch_compile_backend", "eager"]) == 0
    breaks = dict(counters["graph_break"])
    assert breaks == {}, breaks
    assert 1 <= counters["stats"]["unique_graphs"] <= len(widths), dict(counters["stats"])
    torch._dynamo.reset()
