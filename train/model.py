"""Build the masked-LM model from a shipped config, a JSON of one's own, or a local checkpoint.

An architecture is one entry of ``LAYOUTS`` (by the config's ``model_type``):
where its encoder and prediction head are, how its positions count, and the
attention mask SDPA gets without a host-device wait. The masked-positions
head, the fitting of every special id to the tokenizer and the position
check read that entry; the saved model stays the library's own class.

Checks before any GPU time is spent: the model's special ids and vocabulary
agree with the tokenizer the cache was built with, and its positions hold
``max_seq_length`` tokens.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from common.manifest import SpecialIds
from train.flags import ARCHITECTURES, CONFIG_DIR


class ModelError(Exception):
    """The model and the tokenizer or --max_seq_length disagree."""


def padding_mask_4d(config: PretrainedConfig, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, 1, 1, seq) bool: transformers turns a 2D mask into this itself, but first asks the GPU whether
    any position is padding (``mask.all()`` in masking_utils), a wait in every step."""
    return attention_mask[:, None, None, :].bool()


def per_layer_type_masks(config: PretrainedConfig, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """ModernBERT's two masks, keyed by layer type as ModernBertModel accepts them: padding for its global layers,
    padding and the band ``|q - k| <= local_attention // 2`` for its sliding ones (masking_utils' sliding-window
    rule), built from shapes alone, where the library would ask the GPU ``mask.all()`` once for each."""
    pad = padding_mask_4d(config, attention_mask)  # (batch, 1, 1, seq)
    at = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    band = (at[:, None] - at[None, :]).abs() <= config.sliding_window  # (seq, seq)
    return {"full_attention": pad, "sliding_attention": pad & band[None, None]}


@dataclass(frozen=True)
class Layout:
    """Where one family's masked LM keeps its parts and how it counts positions."""

    encoder: str  # attribute: ids (batch, seq) -> hidden states (batch, seq, hidden)
    head: tuple[str, ...]  # attributes applied in turn: hidden states (n, hidden) -> scores (n, vocab)
    first_position: Callable[[PretrainedConfig], int]  # the position id of a block's first token
    position_rule: str  # that rule in words, for the error message
    sdpa_mask: Callable[[PretrainedConfig, torch.Tensor], Any]  # 2D padding mask -> what the encoder takes


ROBERTA = Layout("roberta", ("lm_head",), lambda c: (c.pad_token_id or 0) + 1,
                 "RoBERTa's positions start after pad_token_id", padding_mask_4d)
LAYOUTS: dict[str, Layout] = {
    "roberta": ROBERTA,
    "xlm-roberta": ROBERTA,
    "camembert": ROBERTA,
    "bert": Layout("bert", ("cls",), lambda c: 0, "BERT's absolute positions start at 0", padding_mask_4d),
    # rotary positions have no table, but the model is built (and its RoPE scaled) for max_position_embeddings
    "modernbert": Layout("model", ("head", "decoder"), lambda c: 0, "ModernBERT's rotary positions start at 0",
                         per_layer_type_masks),
}
OTHER = Layout("", (), lambda c: 0, "positions start at 0", padding_mask_4d)  # a model_type not in the table

# config attribute -> the tokenizer's id it must hold (common/manifest.py SpecialIds): the block opener is
# RoBERTa's <s> and BERT's [CLS], the closer </s> and [SEP]
ID_ROLES = {"pad_token_id": "pad", "bos_token_id": "bos", "cls_token_id": "bos", "eos_token_id": "eos",
            "sep_token_id": "eos", "mask_token_id": "mask"}


def layout_of(config: PretrainedConfig) -> Layout:
    return LAYOUTS.get(config.model_type, OTHER)


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
    """Give a fresh model the tokenizer's vocab and every special id its config carries; check a pretrained one.

    A shipped config's ids are placeholders (ModernBERT's cls 50281 in a 30,522-id vocabulary would be saved,
    and transformers warns about it at every load): each id the config has gets the tokenizer's. A pretrained
    model must already hold them (an id it leaves unset, as BERT's bos, is fine).
    """
    wanted = {name: getattr(ids, role) for name, role in ID_ROLES.items() if hasattr(config, name)}
    if fresh:
        config.vocab_size = vocab_size
        for name, value in wanted.items():
            setattr(config, name, value)
    else:
        wrong = {k: (getattr(config, k), v) for k, v in wanted.items() if getattr(config, k) not in (None, v)}
        if wrong:
            detail = ", ".join(f"{k}: model {a}, tokenizer {b}" for k, (a, b) in wrong.items())
            raise ModelError(f"special token ids differ ({detail}); train with the tokenizer the model was trained with")
        if config.vocab_size < vocab_size:
            raise ModelError(f"model vocab_size {config.vocab_size} < tokenizer's {vocab_size}; "
                             "use the model's own tokenizer, or start a fresh model with --architecture")
    outside = {k: v for k, v in config.to_dict().items()
               if k.endswith("_token_id") and isinstance(v, int) and not 0 <= v < config.vocab_size}
    if outside:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(outside.items()))
        raise ModelError(f"config ids outside the vocabulary of {config.vocab_size} ({detail}); set them to null "
                         "or to an id of the tokenizer in the config")


def check_positions(config: PretrainedConfig, max_seq_length: int, pretrained: str | None = None) -> None:
    """The position table (or the length a rotary model is built for) holds a block, by the family's rule.
    ``pretrained``: the model dir a model is loaded from, whose config no flag changes."""
    layout = layout_of(config)
    first = layout.first_position(config)
    need = max_seq_length + first
    have = getattr(config, "max_position_embeddings", need)
    if have < need:
        rule = f"max_seq_length {max_seq_length} + {first} ({layout.position_rule})" if first else \
            f"max_seq_length {max_seq_length} ({layout.position_rule})"
        fix = (f"start from a model with max_position_embeddings >= {need}" if pretrained else
               f"use --config_name with max_position_embeddings >= {need}")
        where = f"{pretrained}: " if pretrained else ""
        raise ModelError(f"{where}max_position_embeddings {have} < {rule} = {need}; lower --max_seq_length or {fix}")


def build_model(architecture: str, config_name: str | None, model_name_or_path: str | None,
                vocab_size: int, special_ids: SpecialIds, max_seq_length: int) -> PreTrainedModel:
    config = load_config(architecture, config_name, model_name_or_path)
    fit_to_tokenizer(config, vocab_size, special_ids, fresh=model_name_or_path is None)
    check_positions(config, max_seq_length, model_name_or_path)
    try:
        if model_name_or_path:
            model = AutoModelForMaskedLM.from_pretrained(model_name_or_path, config=config, local_files_only=True)
        else:
            model = AutoModelForMaskedLM.from_config(config)
    except ImportError as e:  # "attn_implementation": "flash_attention_2" in a config, without flash-attn installed
        raise ModelError(f"{str(e).rstrip('.')}; install it, or drop attn_implementation from the config "
                         "(sdpa is the default)") from None
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
    """The class's own forward, except that with labels the prediction head runs only where a label may be.

    The head (dense + layer norm + a hidden x vocab projection) is a large
    share of a step (for roberta-base with 50k ids, about a third of the
    FLOPs per token), and only the ~15% masked positions have a label. Same
    loss (the mean cross-entropy over labelled positions) and same gradients.
    ``head_positions`` (flat indices into batch x seq, from the collator's
    masking, a number fixed by the batch's shape) says where to run it
    without asking the GPU which labels are set, a wait that stalls the
    step (train/collator.py); positions among them without a label are
    ignored by the loss. ModernBERT's own ``sparse_prediction`` does the
    same from the labels, by a boolean index: that wait, in every step.
    The padding mask is given to SDPA attention ready-made, for the same
    reason (the layout's ``sdpa_mask``). Without ``head_positions``, the
    labelled positions are found from ``labels``. ``logits`` are then those
    positions' rows only, (n_positions, vocab). Without labels (inference,
    fill-mask) it is the class's own forward.
    """
    if labels is None:
        return type(self).forward(self, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    kwargs.pop("return_dict", None)
    layout = layout_of(self.config)
    if attention_mask is not None and attention_mask.dim() == 2 and self.config._attn_implementation == "sdpa":
        attention_mask = layout.sdpa_mask(self.config, attention_mask)
    hidden = getattr(self, layout.encoder)(input_ids, attention_mask=attention_mask, **kwargs)[0]  # (batch, seq, h)
    flat_labels = labels.reshape(-1)
    if head_positions is None:
        head_positions = (flat_labels != -100).nonzero().squeeze(1)
    scores = hidden.reshape(-1, hidden.shape[-1]).index_select(0, head_positions)  # (n, h)
    for part in layout.head:
        scores = getattr(self, part)(scores)  # ... -> (n, vocab)
    loss = torch.nn.functional.cross_entropy(scores, flat_labels.index_select(0, head_positions))
    return MaskedLMOutput(loss=loss, logits=scores)


def head_at_masked_positions_only(model: PreTrainedModel) -> bool:
    """Give a masked LM of a family in ``LAYOUTS`` the masked-positions-only forward; True if it took.

    Set on the instance, not by a subclass: the saved model is the library's
    own ...ForMaskedLM (same weights, same config.json), which
    AutoModelForMaskedLM and pipeline("fill-mask") load as they always did.
    Other architectures keep their own forward.
    """
    layout = layout_of(model.config)
    if not layout.encoder or not all(hasattr(model, a) for a in (layout.encoder, *layout.head)):
        return False
    model.forward = types.MethodType(_masked_only_forward, model)
    model.head_at_masked_positions_only = True  # for logs and benches (accelerate may wrap forward later)
    return True
