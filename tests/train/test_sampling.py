"""The data order: every block once an epoch, keyed by global sample index, an order a checkpoint reproduces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.config import throughput_defaults
from train.dataset import MemmapConcatFullSentenceTextDataset
from train.order import MEGA, Corpus, DataOrder
from train.sampling import SampleSampler, pad_share


def _order(lengths, strategy: str, seed: int = 42, global_batch: int = 8) -> DataOrder:
    return DataOrder([Corpus("train", np.asarray(lengths), 0)], [1.0], strategy, seed, global_batch)


@pytest.mark.parametrize("strategy", ["random", "group_by_length"])
def test_every_block_once_a_pass_keyed_by_global_sample_index(strategy):
    n = 2 * MEGA  # two sorted groups when grouped by length
    lengths = np.random.default_rng(0).integers(3, 513, size=n)
    s = SampleSampler(_order(lengths, strategy))
    first = list(s)
    assert [g for g, _ in first] == list(range(n)) and sorted(b for _, b in first) == list(range(n))
    assert list(SampleSampler(_order(lengths, strategy))) == first  # a function of the seed: a resume rebuilds it
    second = list(s)  # the stream goes on: the next pass, another order
    assert [g for g, _ in second] == list(range(n, 2 * n)) and sorted(b for _, b in second) == list(range(n))
    assert [b for _, b in second] != [b for _, b in first]
    resumed = SampleSampler(_order(lengths, strategy), start=n - 800)
    assert list(resumed)[:800] == first[n - 800:]  # starts at any sample without walking the ones before
    assert [b for _, b in SampleSampler(_order(lengths, "sequential"))] == list(range(n))


def test_a_trainer_epoch_is_whole_global_batches_and_the_stream_goes_on():
    lengths = np.full(1003, 10)
    s = SampleSampler(_order(lengths, "random", global_batch=16))
    assert len(s) == 1003 // 16 * 16 == 992
    a, b = list(s), list(s)
    assert [g for g, _ in a + b] == list(range(2 * 992))  # nothing dropped: the next epoch starts at 992
    assert sorted(x for _, x in (a + b)[:1003]) == list(range(1003))  # the pass is the corpus, not the epoch


def test_grouped_batches_cut_the_padding_of_real_blocks_below_3_percent(bpe_cache):
    lengths = MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 32).lengths()
    assert len(lengths) > 400 and lengths.max() <= 32 and lengths.min() >= 3
    # multiple=1: at 32 ids the collator's rounding up to a multiple of 8 would dominate (at 512 it is < 1.4%)
    random = pad_share(lengths, np.random.default_rng(0).permutation(len(lengths)), 16, multiple=1)
    grouped = pad_share(lengths, _order(lengths, "group_by_length", 0, 16).blocks(0, len(lengths)), 16, multiple=1)
    assert grouped < 0.03 < random, (grouped, random)


def test_pad_share_counts_the_positions_a_batch_computes():
    lengths = np.array([8, 8, 3, 5])
    assert pad_share(lengths, np.arange(4), 2, multiple=8) == 1 - (8 + 8 + 3 + 5) / (16 + 16)  # widths 8 and 8
    assert pad_share(lengths, np.arange(4), 2, multiple=1) == 1 - 24 / (16 + 10)
    assert pad_share(lengths, np.arange(4), 2, multiple=64, max_width=10) == 1 - 24 / (20 + 20)  # as the collator


def test_throughput_defaults_apply_only_where_the_user_chose_nothing():
    values, notes = throughput_defaults({}, set(), cuda=True, bf16_ok=True, tf32_ok=True)
    assert values == {"prediction_loss_only": True, "bf16": True,
                      "tf32": True, "optim": "adamw_torch_fused", "dataloader_num_workers": 2,
                      "dataloader_persistent_workers": True, "accelerator_config": {"non_blocking": True},
                      "logging_nan_inf_filter": False}
    assert len(notes) == 1 and "bf16" in notes[0] and "fused AdamW" in notes[0] and "without waiting" in notes[0]
    mine = {"fp16": True, "optim": "adamw_torch", "dataloader_num_workers": 0, "train_sampling_strategy": "random",
            "dataloader_pin_memory": False, "logging_nan_inf_filter": True}
    values, _ = throughput_defaults(mine, set(mine), cuda=True, bf16_ok=True, tf32_ok=False)
    # the user's fp16 wins over bf16; no TF32 before Ampere; no asynchronous copy from unpinned memory
    assert values == {**mine, "prediction_loss_only": True}
    values, notes = throughput_defaults({}, set(), cuda=False, bf16_ok=False, tf32_ok=False)
    assert set(values) == {"prediction_loss_only"}  # the data order stays random: grouping costs quality


@pytest.mark.parametrize("strategy", ["random", "group_by_length"])
def test_the_trainer_reads_blocks_in_this_order(tmp_path, bpe_dir, bpe_cache, strategy):
    """The Trainer's sampler hook is ours (a private hook: this fails if transformers stops calling it)."""
    from transformers import AutoTokenizer, TrainingArguments

    from common.manifest import SpecialIds
    from train.collator import MlmCollator
    from train.model import build_model
    from train.run import MlmTrainer

    tok = AutoTokenizer.from_pretrained(bpe_dir)
    ids = SpecialIds(tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id, tok.mask_token_id)
    data = MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 32)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, seed=5, report_to="none",
                             use_cpu=True, train_sampling_strategy=strategy, dataloader_pin_memory=False)
    trainer = MlmTrainer(model=build_model("roberta-tiny", None, None, len(tok), ids, 32), args=args,
                         collator=MlmCollator(tok, [ids.bos, ids.eos], ids.pad, max_width=32), train_dataset=data)
    loader = iter(trainer.get_train_dataloader())
    order = trainer.data_order().blocks(0, 12)
    assert trainer.data_order().strategy == strategy
    for first in range(0, 12, 4):
        batch = next(loader)
        restored = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
        for row, block in zip(restored, order[first : first + 4]):
            want = data[int(block)]
            assert torch.equal(row[: len(want)], want)


def test_a_fresh_run_through_the_cli_trains_first_on_samples_0_to_b_of_the_order(tmp_path, monkeypatch, bpe_dir,
                                                                                  bpe_cache):
    """mlm-train's first batch is ``order.blocks(0, B)``, keyed (masked) by g = 0 .. B-1: a fresh run starting
    at sample 1 (or anywhere but 0) passes every resume test, which compare a run with itself."""
    from transformers import AutoTokenizer

    from tests.train import record
    from train.__main__ import main as train_main
    from train.collator import TRAIN_STREAM, MlmCollator

    monkeypatch.setattr(record, "RECORDED", [])
    monkeypatch.setattr(record, "TRAINERS", [])
    record.install(monkeypatch.setattr)
    assert train_main(["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(bpe_cache),
                       "--max_seq_length", "32", "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / "o"),
                       "--max_steps", "1", "--per_device_train_batch_size", "8", "--save_strategy", "no",
                       "--report_to", "none", "--seed", "11", "--disable_tqdm", "true"]) == 0
    first = next(b for training, b in record.RECORDED if training)
    blocks = record.TRAINERS[-1].data_order().blocks(0, 8)
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    data = MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 32)
    want = MlmCollator(tok, [tok.bos_token_id, tok.eos_token_id], tok.pad_token_id, max_width=32, seed=11)(
        [(TRAIN_STREAM, g, data[int(b)]) for g, b in enumerate(blocks)])
    for key in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(first[key], want[key]), key
