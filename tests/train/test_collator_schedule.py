"""The masking-rate schedule: a sample's rate from its global index, evaluation at the fixed rate, a head that
holds every mask in a bounded number of sizes, and the flag's refusals through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from train.__main__ import main as train_main
from train.collator import EVAL_STREAM, SEGMENTS, TRAIN_STREAM, MlmCollator, RateSchedule, head_rows

STEPS, BATCH = 100, 8  # optimizer steps of the run, samples a step (global batch)


def _block(tok, n: int = 200) -> torch.Tensor:
    return torch.cat([torch.tensor([tok.bos_token_id]), torch.arange(n) % 300 + 10, torch.tensor([tok.eos_token_id])])


def _collator(tok, schedule: RateSchedule | None, **kw) -> MlmCollator:
    return MlmCollator(tok, [tok.bos_token_id, tok.eos_token_id], tok.pad_token_id, mlm_probability=0.15,
                       max_width=512, schedule=schedule, **kw)


def _expected_rate(step: int, start: float = 0.3, end: float = 0.15) -> float:
    """Written out apart from the code: linear from the first step (0) to the last (STEPS - 1), then flat."""
    return start + (end - start) * min(step, STEPS - 1) / (STEPS - 1)


def test_a_samples_rate_is_that_of_its_step_taken_from_its_global_index(bpe_dir):
    """Sample g trains at step g // BATCH: its masks count rate(step) x 200 tokens, rounded up or down, whatever
    else is in its batch; samples of one step share a rate; past the last step it stays at the end rate."""
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    coll = _collator(tok, RateSchedule(0.3, 0.15, STEPS, BATCH))
    block = _block(tok)
    for g in (0, 7, 8, 400, 401, 799, 792, 800, 5000):
        k = int((coll([(TRAIN_STREAM, g, block)])["labels"] != -100).sum())
        want = _expected_rate(g // BATCH) * 200
        assert abs(k - want) < 1, (g, k, want)
    # the same sample in another batch, with another global batch's collator: the index decides, with the batch
    alone = coll([(TRAIN_STREAM, 401, block)])
    among = coll([(TRAIN_STREAM, 3, _block(tok, 90)), (TRAIN_STREAM, 401, block)])
    assert torch.equal(alone["labels"][0], among["labels"][1, : alone["labels"].shape[1]])
    other = _collator(tok, RateSchedule(0.3, 0.15, STEPS, 2 * BATCH))([(TRAIN_STREAM, 401, block)])
    assert int((other["labels"] != -100).sum()) == pytest.approx(_expected_rate(401 // 16) * 200, abs=1)


def test_evaluation_masks_at_the_fixed_rate_as_without_a_schedule(bpe_dir):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    block = _block(tok)
    with_schedule = _collator(tok, RateSchedule(0.3, 0.15, STEPS, BATCH), head_positions=True)
    plain = _collator(tok, None, head_positions=True)
    for stream in (EVAL_STREAM, EVAL_STREAM + 2):
        batch = [(stream, key, block) for key in (0, 5, 10_000)]
        a, b = with_schedule(batch), plain(batch)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(with_schedule([(TRAIN_STREAM, 0, block)])["labels"], plain([(TRAIN_STREAM, 0, block)])["labels"])


@pytest.mark.parametrize("start,end", [(0.3, 0.15), (0.1, 0.4), (0.2, 0.2)])
def test_the_head_holds_every_mask_in_at_most_8_sizes_per_width_over_the_run(bpe_dir, start, end):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    schedule = RateSchedule(start, end, STEPS, BATCH)
    coll = _collator(tok, schedule, head_positions=True)
    g = torch.Generator().manual_seed(0)
    sizes: dict[int, set[int]] = {}
    for step in range(0, STEPS + 20):
        keys = range(step * BATCH, (step + 1) * BATCH)
        lengths = torch.randint(380, 510, (BATCH,), generator=g).tolist()
        b = coll([(TRAIN_STREAM, k, _block(tok, n)) for k, n in zip(keys, lengths)])
        labelled = set((b["labels"].view(-1) != -100).nonzero().squeeze(1).tolist())
        assert labelled <= set(b["head_positions"].tolist())
        sizes.setdefault(b["input_ids"].shape[1], set()).add(len(b["head_positions"]))
        room = float(schedule.room(np.array([step]))[0])
        assert room >= float(schedule.rate(np.array([step]))[0])
        assert len(b["head_positions"]) == head_rows(*b["input_ids"].shape, room)  # the shape and the eighth decide
    assert sizes and all(len(s) <= SEGMENTS for s in sizes.values())
    assert len(sizes[512]) == (1 if start == end else SEGMENTS)


def test_the_rate_and_the_heads_room_hold_in_floating_point_at_every_step():
    """``room`` (what the head is sized for) is never below a step's rate, and takes at most 8 values."""
    for steps in (1, 2, 7, 8, 9, 1000, 12_345):
        for start, end in ((0.3, 0.15), (0.15, 0.3), (1.0, 0.01), (0.4, 0.4)):
            s = RateSchedule(start, end, steps, 4)
            step = np.arange(steps + 10)
            rate, room = s.rate(step), s.room(step)
            assert (room >= rate).all() and len(set(room.tolist())) <= SEGMENTS
            assert rate[0] == start and rate[max(steps - 1, 1)] == end and (rate[steps:] == end).all()


@pytest.mark.parametrize("value,said", [
    ("0.3-0.15", "not START:END"), ("0.3:0.15:0.1", "not START:END"), ("x:0.15", "not START:END"),
    ("0.3:1.5", "1.5 is outside (0, 1]"), ("0:0.15", "0.0 is outside (0, 1]"), ("0.3:nan", "nan is outside (0, 1]"),
])
def test_a_malformed_or_out_of_range_schedule_is_one_line_before_anything_loads(capsys, tmp_path, value, said):
    rc = train_main(["--tokenizer_name_or_path", str(tmp_path), "--datasets_cache_dir", str(tmp_path / "nothing"),
                     "--output_dir", str(tmp_path / "out"), "--mlm_probability_schedule", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --mlm_probability_schedule") and said in err[0]
