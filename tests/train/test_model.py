"""The prediction head at masked positions only, for every shipped architecture: the dense head's loss and
gradients on padded batches, a standard saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, TrainingArguments

from common.manifest import SpecialIds
from train.collator import TRAIN_STREAM, MlmCollator, head_rows
from train.dataset import MemmapLineByLineTextDataset
from train.flags import ARCHITECTURES, CONFIG_DIR
from train.model import build_model
from train.run import MlmTrainer

# base and large shrunk to this (same family, layer pattern, head and position rule) so a test runs them in seconds
SHRUNK = {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 96, "num_hidden_layers": 3}


def config_file(name: str, where: Path) -> Path:
    """A shipped config as a --config_name file: a tiny one as it ships, base and large shrunk; ModernBERT's
    local window set to 32 ids, so its sliding layers cut into the tests' 32-id blocks (a window of 128 would not)."""
    cfg = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    if not name.endswith("-tiny"):
        cfg.update(SHRUNK)
    if "local_attention" in cfg:
        cfg["local_attention"] = 32
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def special_ids(tok) -> SpecialIds:
    opener = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
    closer = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    return SpecialIds(opener, closer, tok.pad_token_id, tok.unk_token_id, tok.mask_token_id)


def _model_and_batches(tmp_path, bpe_dir, bpe_cache, name: str, n_batches: int = 2, head_positions: bool = False):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    ids = special_ids(tok)
    torch.manual_seed(0)
    config = None if name.endswith("-tiny") else str(config_file(name, tmp_path / "configs"))
    model = build_model(name, config, None, len(tok), ids, 32)
    model.eval()  # no dropout: the two heads must see the same activations
    data = MemmapLineByLineTextDataset(bpe_cache / "train", 32)  # lines: blocks of many lengths, padded batches
    coll = MlmCollator(tok, [ids.bos, ids.eos, ids.pad], ids.pad, max_width=32, seed=1, head_positions=head_positions)
    batches = [coll([(TRAIN_STREAM, i, data[i]) for i in range(k * 8, k * 8 + 8)]) for k in range(n_batches)]
    assert all((b["attention_mask"] == 0).any() for b in batches)  # padding in every batch: the masks matter
    return model, tok, coll, batches


def without_positions(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "head_positions"}


def _loss_and_grads(model, batches, dense: bool):
    model.zero_grad()
    losses = []
    for b in batches:  # accumulated, as gradient_accumulation_steps does
        out = type(model).forward(model, **without_positions(b)) if dense else model(**b)
        (out.loss / len(batches)).backward()
        losses.append(out.loss.detach())
    return losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("head_positions", [False, True])
def test_the_masked_only_head_gives_the_dense_loss_and_gradients(tmp_path, bpe_dir, bpe_cache, name, head_positions):
    """Found from the labels, or at the positions masking drew (a superset: the loss ignores the extra rows);
    against the class's own forward, whose attention masks transformers builds from the 2D mask."""
    model, _, _, batches = _model_and_batches(tmp_path, bpe_dir, bpe_cache, name, head_positions=head_positions)
    assert "forward" in vars(model)  # the masked-only forward is in place
    dense_losses, dense_grads = _loss_and_grads(model, batches, dense=True)
    sparse_losses, sparse_grads = _loss_and_grads(model, batches, dense=False)
    for a, b in zip(dense_losses, sparse_losses):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert dense_grads.keys() == sparse_grads.keys() and len(dense_grads) > 10
    for n in dense_grads:
        torch.testing.assert_close(sparse_grads[n], dense_grads[n], rtol=1e-5, atol=1e-7, msg=n)
    labelled = int((batches[0]["labels"] != -100).sum())
    rows = len(batches[0]["head_positions"]) if head_positions else labelled
    if head_positions:  # a number fixed by the shape: the rows past the labelled ones are ignored by the loss
        assert labelled < rows == head_rows(*batches[0]["labels"].shape, 0.15) < 0.3 * batches[0]["labels"].numel()
    assert model(**batches[0]).logits.shape == (rows, model.config.vocab_size)  # only those rows computed
    assert model(input_ids=batches[0]["input_ids"]).logits.shape[:2] == batches[0]["input_ids"].shape  # inference


@pytest.mark.parametrize("name", ["roberta-tiny", "modernbert-tiny", "bert-base"])
def test_evaluation_loss_is_unchanged_and_the_saved_model_is_standard(tmp_path, bpe_dir, bpe_cache, name):
    model, tok, coll, _ = _model_and_batches(tmp_path, bpe_dir, bpe_cache, name)
    data = MemmapLineByLineTextDataset(bpe_cache / "validation", 32)
    args = TrainingArguments(output_dir=str(tmp_path / "t"), per_device_eval_batch_size=16, report_to="none",
                             use_cpu=True, seed=3)

    def evaluate() -> dict:
        trainer = MlmTrainer(model=model, args=args, collator=coll, eval_dataset=data, processing_class=tok)
        return trainer.evaluate()

    sparse = evaluate()
    del model.forward  # the class's own dense head
    dense = evaluate()
    assert abs(sparse["eval_loss"] - dense["eval_loss"]) < 1e-5
    assert abs(sparse["eval_perplexity"] - dense["eval_perplexity"]) < 1e-4 * dense["eval_perplexity"]
    model, *_ = _model_and_batches(tmp_path, bpe_dir, bpe_cache, name)
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["architectures"] == [type(model).__name__]
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "saved")
    assert type(loaded) is type(model) and "forward" not in vars(loaded)
