"""Build the masked-LM model from a shipped config, a JSON of one's own, or a local checkpoint.

Checks before any GPU time is spent: the model's special ids and vocabulary
agree with the tokenizer the cache was built with, and its position table
holds ``max_seq_length`` tokens (RoBERTa positions start after ``pad_token_id``).
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from common.manifest import SpecialIds
from train.flags import ARCHITECTURES, CONFIG_DIR


class ModelError(Exception):
    """The model and the tokenizer or --max_seq_length disagree."""


def load_config(architecture: str, config_name: str | None, model_name_or_path: str | None) -> PretrainedConfig:
    if model_name_or_path:
        if not Path(model_name_or_path).is_dir():
            raise ModelError(f"--model_name_or_path {model_name_or_path}: not a local directory (nothing is downloaded)")
        return AutoConfig.from_pretrained(model_name_or_path, local_files_only=True)
    if config_name:
        if not Path(config_name).is_file():
            raise ModelError(f"--config_name {config_name}: no such file; give a config.json path")
        return AutoConfig.from_pretrained(config_name, local_files_only=True)
    if architecture not in ARCHITECTURES:
        raise ModelError(f"--architecture {architecture!r}: one of {', '.join(ARCHITECTURES)}, or use --config_name")
    return AutoConfig.from_pretrained(CONFIG_DIR / f"{architecture}.json")


def fit_to_tokenizer(config: PretrainedConfig, vocab_size: int, ids: SpecialIds, fresh: bool) -> None:
    """Give a fresh model the tokenizer's vocab and ids; check a pretrained one agrees."""
    wanted = {"pad_token_id": ids.pad, "bos_token_id": ids.bos, "eos_token_id": ids.eos}
    if fresh:
        config.vocab_size = vocab_size
        for k, v in wanted.items():
            setattr(config, k, v)
        return
    wrong = {k: (getattr(config, k, None), v) for k, v in wanted.items() if getattr(config, k, None) != v}
    if wrong:
        detail = ", ".join(f"{k}: model {a}, tokenizer {b}" for k, (a, b) in wrong.items())
        raise ModelError(f"special token ids differ ({detail}); train with the tokenizer the model was trained with")
    if config.vocab_size < vocab_size:
        raise ModelError(f"model vocab_size {config.vocab_size} < tokenizer's {vocab_size}; "
                         "use the model's own tokenizer, or start a fresh model with --architecture")


def check_positions(config: PretrainedConfig, max_seq_length: int) -> None:
    pad = config.pad_token_id or 0
    need = max_seq_length + pad + 1
    if getattr(config, "max_position_embeddings", need) < need:
        raise ModelError(
            f"max_position_embeddings {config.max_position_embeddings} < max_seq_length {max_seq_length} + "
            f"pad_token_id {pad} + 1 = {need}; lower --max_seq_length or use --config_name with "
            f"max_position_embeddings >= {need}"
        )


def build_model(architecture: str, config_name: str | None, model_name_or_path: str | None,
                vocab_size: int, special_ids: SpecialIds, max_seq_length: int) -> PreTrainedModel:
    config = load_config(architecture, config_name, model_name_or_path)
    fit_to_tokenizer(config, vocab_size, special_ids, fresh=model_name_or_path is None)
    check_positions(config, max_seq_length)
    if model_name_or_path:
        model = AutoModelForMaskedLM.from_pretrained(model_name_or_path, config=config, local_files_only=True)
    else:
        model = AutoModelForMaskedLM.from_config(config)
    # RobertaForMaskedLM.forward takes **kwargs, so the Trainer assumes it
    # averages over num_items_in_batch itself and skips its own scaling
    # fix-up; it returns a plain mean, and the logged loss and gradients
    # came out doubled under gradient_accumulation_steps 2 (transformers 5.24).
    model.accepts_loss_kwargs = False
    head_at_masked_positions_only(model)
    return model


def _masked_only_forward(self: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                         labels: torch.Tensor | None = None, head_positions: torch.Tensor | None = None,
                         **kwargs: Any) -> MaskedLMOutput:
    """RobertaForMaskedLM.forward, except that with labels the prediction head runs only where a label may be.

    The head (dense + layer norm + a hidden x vocab projection) is a large
    share of a step (for roberta-base with 50k ids, about a third of the
    FLOPs per token), and only the ~15% masked positions have a label. Same
    loss (the mean cross-entropy over labelled positions) and same gradients.
    ``head_positions`` (flat indices into batch x seq, from the collator's
    masking, a number fixed by the batch's shape) says where to run it
    without asking the GPU which labels are set, a wait that stalls the
    step (train/collator.py); positions among them without a label are
    ignored by the loss. The padding mask is given to SDPA attention as
    4D, for the same reason. Without it, the labelled
    positions are found from ``labels``. ``logits`` are then those
    positions' rows only, (n_positions, vocab). Without labels (inference,
    fill-mask) it is the class's own forward.
    """
    if labels is None:
        return type(self).forward(self, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    kwargs.pop("return_dict", None)
    if attention_mask is not None and attention_mask.dim() == 2 and self.config._attn_implementation == "sdpa":
        # already 4D: transformers would otherwise ask the GPU whether any position is padding (mask.all())
        attention_mask = attention_mask[:, None, None, :].bool()
    hidden = self.roberta(input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)[0]  # (batch, seq, h)
    flat_labels = labels.reshape(-1)
    if head_positions is None:
        head_positions = (flat_labels != -100).nonzero().squeeze(1)
    scores = self.lm_head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, head_positions))  # (n, vocab)
    loss = torch.nn.functional.cross_entropy(scores, flat_labels.index_select(0, head_positions))
    return MaskedLMOutput(loss=loss, logits=scores)


def head_at_masked_positions_only(model: PreTrainedModel) -> bool:
    """Give a RoBERTa masked LM the masked-positions-only forward; True if it took.

    Set on the instance, not by a subclass: the saved model is a plain
    RobertaForMaskedLM (same weights, same config.json), which
    AutoModelForMaskedLM and pipeline("fill-mask") load as they always did.
    Other architectures keep their own forward.
    """
    if not (hasattr(model, "roberta") and hasattr(model, "lm_head")):
        return False
    model.forward = types.MethodType(_masked_only_forward, model)
    model.head_at_masked_positions_only = True  # for logs and benches (accelerate may wrap forward later)
    return True
