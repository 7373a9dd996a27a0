"""The prediction head at masked positions only: the dense head's loss and gradients, a standard saved model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, RobertaForMaskedLM, TrainingArguments

from common.manifest import SpecialIds
from train.collator import TRAIN_STREAM, MlmCollator, head_rows
from train.dataset import MemmapConcatFullSentenceTextDataset
from train.model import build_model
from train.run import MlmTrainer


def _model_and_batches(bpe_dir, bpe_cache, n_batches: int = 2, head_positions: bool = False):
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    ids = SpecialIds(tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id, tok.mask_token_id)
    torch.manual_seed(0)
    model = build_model("roberta-tiny", None, None, len(tok), ids, 32)
    model.eval()  # no dropout: the two heads must see the same activations
    data = MemmapConcatFullSentenceTextDataset(bpe_cache / "train", 32)
    coll = MlmCollator(tok, [ids.bos, ids.eos, ids.pad], ids.pad, max_width=32, seed=1, head_positions=head_positions)
    batches = [coll([(TRAIN_STREAM, i, data[i]) for i in range(k * 8, k * 8 + 8)]) for k in range(n_batches)]
    return model, tok, coll, batches


def without_positions(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "head_positions"}


def _loss_and_grads(model, batches, dense: bool):
    model.zero_grad()
    losses = []
    for b in batches:  # accumulated, as gradient_accumulation_steps does
        out = RobertaForMaskedLM.forward(model, **without_positions(b)) if dense else model(**b)
        (out.loss / len(batches)).backward()
        losses.append(out.loss.detach())
    return losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head_positions", [False, True])
def test_the_masked_only_head_gives_the_dense_loss_and_gradients(bpe_dir, bpe_cache, head_positions):
    """Found from the labels, or at the positions masking drew (a superset: the loss ignores the extra rows)."""
    model, _, _, batches = _model_and_batches(bpe_dir, bpe_cache, head_positions=head_positions)
    assert model.forward.__func__ is not RobertaForMaskedLM.forward  # the masked-only forward is in place
    dense_losses, dense_grads = _loss_and_grads(model, batches, dense=True)
    sparse_losses, sparse_grads = _loss_and_grads(model, batches, dense=False)
    for a, b in zip(dense_losses, sparse_losses):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert dense_grads.keys() == sparse_grads.keys() and len(dense_grads) > 10
    for name in dense_grads:
        torch.testing.assert_close(sparse_grads[name], dense_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    labelled = int((batches[0]["labels"] != -100).sum())
    rows = len(batches[0]["head_positions"]) if head_positions else labelled
    if head_positions:  # a number fixed by the shape: the rows past the labelled ones are ignored by the loss
        assert labelled < rows == head_rows(*batches[0]["labels"].shape, 0.15) < 0.3 * batches[0]["labels"].numel()
    assert model(**batches[0]).logits.shape == (rows, model.config.vocab_size)  # only those rows computed
    assert model(input_ids=batches[0]["input_ids"]).logits.shape[:2] == batches[0]["input_ids"].shape  # inference


def test_evaluation_loss_is_unchanged_and_the_saved_model_is_standard(tmp_path, bpe_dir, bpe_cache):
    model, tok, coll, _ = _model_and_batches(bpe_dir, bpe_cache)
    data = MemmapConcatFullSentenceTextDataset(bpe_cache / "validation", 32)
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
    model, *_ = _model_and_batches(bpe_dir, bpe_cache)
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["architectures"] == ["RobertaForMaskedLM"]
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "saved")
    assert type(loaded) is RobertaForMaskedLM and "forward" not in vars(loaded)
