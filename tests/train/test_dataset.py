import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from common.format import FormatError
from common.reader import SplitReader
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
