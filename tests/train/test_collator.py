"""Padding to few shapes and masking keyed by sample: BERT's rule, a fixed head size, the same masks anywhere."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from train.collator import EVAL_STREAM, TRAIN_STREAM, MlmCollator, RateSchedule, head_rows, padded_width


def _collator(tok, p: float = 0.15, **kw) -> MlmCollator:
    return MlmCollator(tok, [tok.bos_token_id, tok.eos_token_id], tok.pad_token_id, mlm_probability=p, **kw)


def _blocks(tok, n: int, seed: int, longest: int = 200) -> list[torch.Tensor]:
    """Blocks as the datasets serve them: bos, ids with an eos between lines now and then, eos."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for length in torch.randint(1, longest, (n,), generator=g).tolist():
        body = torch.randint(5, len(tok), (length,), generator=g)
        body[torch.rand(length, generator=g) < 0.05] = tok.eos_token_id  # the separator between lines
        out.append(torch.cat([torch.tensor([tok.bos_token_id]), body, torch.tensor([tok.eos_token_id])]))
    return out


def _maskable(tok, batch: dict) -> torch.Tensor:
    special = torch.tensor([tok.bos_token_id, tok.eos_token_id, tok.pad_token_id])
    return (batch["attention_mask"] == 1) & ~torch.isin(batch["input_ids"], special)


def test_widths_are_multiples_of_64_capped_at_the_block_size_with_an_exact_attention_mask(bpe_dir):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    coll = _collator(tok, p=0.5, max_width=100)
    b = coll([(TRAIN_STREAM, 0, torch.tensor([0, 10, 11, 12, 2])), (TRAIN_STREAM, 1, torch.tensor([0] + [20] * 9 + [2]))])
    assert b["input_ids"].shape == (2, 64) and b["attention_mask"].sum(1).tolist() == [5, 11]
    assert (b["input_ids"][0, 5:] == tok.pad_token_id).all() and (b["labels"][b["attention_mask"] == 0] == -100).all()
    assert (b["labels"][:, 0] == -100).all() and (b["labels"] != -100).any()  # bos never masked
    assert coll([(TRAIN_STREAM, 0, torch.arange(70) % 7 + 5)])["input_ids"].shape == (1, 100)  # capped at the block
    assert [padded_width(n, 64, 512) for n in (1, 64, 65, 449, 512)] == [64, 64, 128, 512, 512]
    assert len({padded_width(n, 64, 512) for n in range(1, 513)}) == 8


@pytest.mark.parametrize("p", [0.15, 0.5, 1.0])
def test_each_block_gets_p_of_its_real_tokens_at_the_bert_rates(bpe_dir, p):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    coll = _collator(tok, p=p, max_width=512)
    blocks = _blocks(tok, 256, seed=0)
    b = coll([(TRAIN_STREAM, k, x) for k, x in enumerate(blocks)])
    ids = coll.pad(blocks)[0]
    ids = torch.from_numpy(ids)
    plain = {"input_ids": ids, "attention_mask": b["attention_mask"]}
    labels, out = b["labels"], b["input_ids"]
    chosen = labels != -100
    maskable = _maskable(tok, plain)
    assert not (chosen & ~maskable).any()  # never bos, eos or padding
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(out[~chosen], ids[~chosen])
    m, k = maskable.sum(1).double(), chosen.sum(1).double()
    assert ((k - p * m).abs() < 1).all()  # every block: p of its maskable tokens, rounded up or down
    assert float(k.sum() / m.sum()) == pytest.approx(p, abs=0.01)  # rounded at random: the rate is p
    as_mask = float((out[chosen] == tok.mask_token_id).float().mean())
    kept = float((out[chosen] == ids[chosen]).float().mean())
    assert as_mask == pytest.approx(0.8, abs=0.03) and kept == pytest.approx(0.1, abs=0.025)  # the rest: random ids


@pytest.mark.parametrize("kw", [{}, {"whole_word_mask": True},
                                {"whole_word_mask": True, "schedule": RateSchedule(0.4, 0.1, 50, 16)}],
                         ids=["pieces", "whole_words", "whole_words_scheduled"])
def test_a_blocks_masks_depend_on_seed_stream_and_key_only(bpe_dir, kw):
    """Not on the batch it is in, its row, the batch's width or the process reading it; with whole words and a
    rate schedule too."""
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    blocks = _blocks(tok, 16, seed=1, longest=120)
    blocks[0] = torch.cat([blocks[0][:30], torch.tensor([tok.eos_token_id])])  # short: alone, a narrower batch
    coll = _collator(tok, seed=7, max_width=512, **kw)
    alone = coll([(TRAIN_STREAM, 1234, blocks[0])])
    n = len(blocks[0])
    among = coll([(TRAIN_STREAM, 9, blocks[3]), *[(TRAIN_STREAM, 100 + i, x) for i, x in enumerate(blocks[1:])],
                  (TRAIN_STREAM, 1234, blocks[0])])
    assert among["input_ids"].shape[1] > alone["input_ids"].shape[1]  # another width, another row
    for key in ("input_ids", "labels"):
        assert torch.equal(among[key][-1, :n], alone[key][0, :n])
    labels = alone["labels"][0, :n]
    for other in (_collator(tok, seed=8, max_width=512, **kw)([(TRAIN_STREAM, 1234, blocks[0])]),
                  coll([(TRAIN_STREAM, 1235, blocks[0])]), coll([(EVAL_STREAM, 1234, blocks[0])])):
        assert not torch.equal(other["labels"][0, :n], labels)


@pytest.mark.parametrize("p", [0.15, 0.5, 1.0])
def test_the_head_runs_on_a_number_of_rows_fixed_by_the_shape_covering_every_label(bpe_dir, p):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    coll = _collator(tok, p=p, max_width=256, head_positions=True)
    for seed in range(4):
        b = coll([(TRAIN_STREAM, 50 * seed + k, x) for k, x in enumerate(_blocks(tok, 24, seed=seed, longest=250))])
        positions = b["head_positions"]
        assert len(positions) == head_rows(*b["input_ids"].shape, p)  # the shape alone decides it
        flat_labels = b["labels"].view(-1)
        labelled = set((flat_labels != -100).nonzero().squeeze(1).tolist())
        head = positions.tolist()
        assert labelled <= set(head)  # the head sees every labelled position
        assert len(set(head) & labelled) == len(labelled) == len([x for x in head if x in labelled])  # each once
        assert (flat_labels[positions[~torch.isin(positions, torch.tensor(sorted(labelled)))]] == -100).all()
    assert "head_positions" not in _collator(tok)([(TRAIN_STREAM, 0, torch.tensor([0, 9, 9, 2]))])


@pytest.mark.parametrize("p", [0.15, 0.4, 0.75])
def test_a_short_blocks_mask_count_is_rounded_up_or_down_at_random_so_the_rate_is_p(bpe_dir, p):
    """Blocks of 6 maskable ids: p x 6 masks, rounded at random (0.9 -> 0 or 1, 1 nine times in ten). A count
    always rounded down (or up, or to the nearest) is off by up to one mask a block, far outside the
    tolerance here; blocks of ~100 ids would hide it inside 1%."""
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    coll = _collator(tok, p=p, max_width=64)
    n = 20_000
    body = torch.arange(6) + 10
    b = coll([(TRAIN_STREAM, k, torch.cat([torch.tensor([tok.bos_token_id]), body, torch.tensor([tok.eos_token_id])]))
              for k in range(n)])
    k = (b["labels"] != -100).sum(1).double()
    assert float(k.mean()) == pytest.approx(p * 6, abs=0.02)  # std. error of the mean: under 0.004
    assert set(k.tolist()) == {float(int(p * 6)), float(int(p * 6) + 1)}  # each block: rounded down or up
