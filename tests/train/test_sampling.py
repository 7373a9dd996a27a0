"""Length-grouped batches: every example once, an order a checkpoint reproduces, padding under 3%."""

from __future__ import annotations

import numpy as np

from train.config import throughput_defaults
from train.dataset import MemmapConcatFullSentenceTextDataset
from train.sampling import LengthGroupedSampler, pad_share


def test_every_example_once_in_an_order_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(3, 513, size=5000)
    s = LengthGroupedSampler(lengths, batch_size=8, seed=42)
    first = list(s)
    assert sorted(first) == list(range(5000)) and list(s) == first  # a function of (seed, epoch) alone
    assert list(LengthGroupedSampler(lengths, 8, 42)) == first  # a resumed run rebuilds the same order
    s.set_epoch(1)
    assert list(s) != first and sorted(s) == list(range(5000))


def test_grouped_batches_cut_the_padding_of_real_blocks_below_3_percent(bpe_cache):
    lengths = MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 32).lengths()
    assert len(lengths) > 400 and lengths.max() <= 32 and lengths.min() >= 3
    # multiple=1: at 32 ids the collator's rounding up to a multiple of 8 would dominate (at 512 it is < 1.4%)
    random = pad_share(lengths, np.random.default_rng(0).permutation(len(lengths)), 16, multiple=1)
    grouped = pad_share(lengths, LengthGroupedSampler(lengths, 16, 0).order(), 16, multiple=1)
    assert grouped < 0.03 < random, (grouped, random)


def test_pad_share_counts_the_positions_a_batch_computes():
    lengths = np.array([8, 8, 3, 5])
    assert pad_share(lengths, np.arange(4), 2) == 1 - (8 + 8 + 3 + 5) / (16 + 16)  # widths 8 and 8 (multiple of 8)
    assert pad_share(lengths, np.arange(4), 2, multiple=1) == 1 - 24 / (16 + 10)


def test_throughput_defaults_apply_only_where_the_user_chose_nothing():
    values, notes = throughput_defaults({}, set(), cuda=True, bf16_ok=True, tf32_ok=True)
    assert values == {"train_sampling_strategy": "group_by_length", "prediction_loss_only": True, "bf16": True,
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
    assert set(values) == {"train_sampling_strategy", "prediction_loss_only"}
