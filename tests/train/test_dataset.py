import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from common.format import FormatError
from common.reader import SplitReader
from train.collator import MlmCollator
from train.dataset import MemmapConcatFullSentenceTextDataset, MemmapLineByLineTextDataset


def test_concat_dataset_serves_the_manifest_blocks(bpe_cache):
    ds = MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 32)
    reader = SplitReader(bpe_cache / "train")
    assert len(ds) == reader.manifest.totals()["blocks"] > 0
    for i in [0, 1, len(ds) // 2, len(ds) - 1]:
        x = ds[i]
        assert x.dtype == torch.long and x.dim() == 1 and len(x) <= 32
        assert x.tolist() == reader.block(i).tolist()
        assert x[0] == reader.bos and x[-1] == reader.eos


def test_wrong_max_seq_length_is_refused(bpe_cache):
    with pytest.raises(FormatError, match="packed for --max_seq_length 32, training asked for 64"):
        MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 64)


def test_line_by_line_serves_every_line_and_splits_long_ones(bpe_cache, bpe_dir):
    ds = MemmapLineByLineTextDataset(bpe_cache / "train", 32)
    reader = SplitReader(bpe_cache / "train")
    lines = [line for k in range(len(reader.manifest.pieces)) for line in reader.lines(k)]
    assert len(ds) >= len(lines)
    pieces = [ds[i] for i in range(len(ds))]
    assert all(len(p) <= 32 and p[0] == reader.bos and p[-1] == reader.eos for p in pieces)
    assert np.concatenate([p[1:-1].numpy() for p in pieces]).tolist() == np.concatenate(lines).tolist()
    assert len(ds) == sum(-(-len(line) // 30) for line in lines)  # 30 = 32 - bos - eos per piece
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    long_ids = tok(" ".join(["language"] * 200), add_special_tokens=False)["input_ids"]
    assert any(p[1:-1].tolist() == long_ids[30:60] for p in pieces)  # the middle of the long line is there


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_pickles_into_dataloader_workers(bpe_cache, ctx):
    ds = MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 32)
    _ = ds[0]  # files checked in this process: a spawned worker checks what it opens itself
    assert ds.reader._checked and pickle.loads(pickle.dumps(ds)).reader._checked == {}
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=ctx, collate_fn=list)
    got = [x.tolist() for batch in loader for x in batch]
    assert got == [ds[i].tolist() for i in range(len(ds))]


def test_collator_pads_to_8_with_an_exact_attention_mask(bpe_dir):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    pad = tok.pad_token_id
    special = [tok.bos_token_id, tok.eos_token_id]  # pad left out: only the attention mask keeps padding unmasked
    coll = MlmCollator(tok, special, pad, mlm_probability=0.5)
    examples = [torch.tensor([0, 10, 11, 12, 2]), torch.tensor([0] + [20] * 9 + [2])]
    torch.manual_seed(0)
    b = coll(examples)
    assert b["input_ids"].shape == (2, 16) and b["attention_mask"].shape == (2, 16)
    assert b["attention_mask"].sum(1).tolist() == [5, 11]
    assert (b["labels"][b["attention_mask"] == 0] == -100).all()  # padding never a target
    assert (b["labels"][:, 0] == -100).all()  # bos never masked
    assert (b["labels"] != -100).any()
    # padding is the pad id and stays it: masking never replaces a pad position
    assert (b["input_ids"][0, 5:] == pad).all() and (b["input_ids"][1, 11:] == pad).all()
    assert (b["attention_mask"][0, 5:] == 0).all() and (b["attention_mask"][0, :5] == 1).all()


def test_masking_targets_real_tokens_only_at_the_bert_rates(bpe_dir):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    special = [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id]
    coll = MlmCollator(tok, special, tok.pad_token_id, mlm_probability=0.15)
    g = torch.Generator().manual_seed(0)
    examples = []
    for n in torch.randint(3, 200, (128,), generator=g).tolist():
        body = torch.randint(len(special) + 2, len(tok), (n,), generator=g)
        body[torch.rand(n, generator=g) < 0.05] = tok.eos_token_id  # the separator between lines of a block
        examples.append(torch.cat([torch.tensor([tok.bos_token_id]), body, torch.tensor([tok.eos_token_id])]))
    plain = coll.pad(examples)
    assert set(plain) == {"input_ids", "attention_mask"}  # labels come from masking
    b = coll.mask(plain, torch.Generator().manual_seed(1))
    ids, out, labels = plain["input_ids"], b["input_ids"], b["labels"]
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen])  # the target is the original id
    assert torch.equal(out[~chosen], ids[~chosen]) and (labels[~chosen] == -100).all()
    maskable = (plain["attention_mask"] == 1) & ~torch.isin(ids, torch.tensor(special))
    assert not (chosen & ~maskable).any()  # never bos, eos or padding
    assert maskable.sum() > 10_000
    assert float(chosen.sum() / maskable.sum()) == pytest.approx(0.15, abs=0.01)
    as_mask = float((out[chosen] == tok.mask_token_id).float().mean())
    kept = float((out[chosen] == ids[chosen]).float().mean())
    assert as_mask == pytest.approx(0.8, abs=0.03) and kept == pytest.approx(0.1, abs=0.02)  # the rest: random ids
    assert torch.equal(coll.mask(plain, torch.Generator().manual_seed(1))["labels"], labels)  # a function of the seed
    assert not torch.equal(coll.mask(plain, torch.Generator().manual_seed(2))["labels"], labels)


def _reference_mask(coll: MlmCollator, batch: dict, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's rule written the plain way, with boolean masks over the whole batch, from the same draws."""
    ids, attention = batch["input_ids"], batch["attention_mask"]
    u = torch.rand(ids.shape, generator=g)
    random_ids = torch.randint(coll.vocab_size, ids.shape, generator=g)
    p = coll.mlm_probability
    chosen = (u < p) & (attention != 0) & ~torch.isin(ids, coll.special)
    out = torch.where(chosen & (u < p * 0.8), coll.mask_id, ids)
    out = torch.where(chosen & (u >= p * 0.8) & (u < p * 0.9), random_ids, out)
    return out, torch.where(chosen, ids, -100)


@pytest.mark.parametrize("p", [0.15, 0.5, 1.0])
def test_masking_at_planned_positions_is_the_plain_rule_and_positions_cover_every_label(bpe_dir, p):
    """The sync-free edit (a plan of drawn positions, index ops) must give exactly the boolean-mask rule."""
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    special = [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id]
    coll = MlmCollator(tok, special, tok.pad_token_id, mlm_probability=p)
    g = torch.Generator().manual_seed(3)
    examples = [torch.cat([torch.tensor([0]), torch.randint(3, len(tok), (n,), generator=g), torch.tensor([2])])
                for n in torch.randint(1, 90, (24,), generator=g).tolist()]
    plain = coll.pad(examples)
    for seed in range(5):
        got = coll.mask(plain, torch.Generator().manual_seed(seed), head_positions=True)
        want_ids, want_labels = _reference_mask(coll, plain, torch.Generator().manual_seed(seed))
        assert torch.equal(got["input_ids"], want_ids) and torch.equal(got["labels"], want_labels)
        positions = got["head_positions"]
        labelled = (want_labels.view(-1) != -100).nonzero().squeeze(1)
        assert set(labelled.tolist()) <= set(positions.tolist())  # the head sees every labelled position
        assert len(set(positions.tolist())) == len(positions)  # each once
    assert "head_positions" not in coll.mask(plain, torch.Generator().manual_seed(0))
