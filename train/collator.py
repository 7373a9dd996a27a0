"""Batch blocks, add the attention mask transformers' MLM collator leaves out, then mask.

Padding is known from each example's length before masking, so the mask is
exact even when random replacement happens to draw the pad id.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling


class MlmCollator:
    def __init__(self, tokenizer: Any, special_ids: list[int], pad_id: int, mlm_probability: float = 0.15,
                 pad_to_multiple_of: int | None = 8):
        self.inner = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability,
                                                     pad_to_multiple_of=pad_to_multiple_of)
        self.special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.pad_id = pad_id
        self.multiple = pad_to_multiple_of or 1

    def __call__(self, examples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(x) for x in examples])
        width = int(-(-int(lengths.max()) // self.multiple) * self.multiple)  # tensor cores like multiples of 8
        input_ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        for row, x in zip(input_ids, examples):
            row[: len(x)] = x
        attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        never_mask = torch.isin(input_ids, self.special) | (attention_mask == 0)
        input_ids, labels = self.inner.torch_mask_tokens(input_ids, special_tokens_mask=never_mask)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
