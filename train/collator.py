"""Batch blocks with an exact attention mask; mask tokens (BERT's 80/10/10) from a generator the caller seeds.

In training the two happen at different times. ``pad`` runs in the DataLoader;
``mask`` runs when the Trainer is about to use the batch (``train.run.MlmTrainer``),
with a generator seeded from where the batch is in training. Masking inside
the DataLoader drew from the global torch RNG, and accelerate's DataLoaderShard
collates one batch ahead: when the Trainer saved its RNG state at checkpoint-k,
batch k+1's masks were already drawn, so a resumed run drew them (and every
later mask and dropout draw) from other states: resumed from step 4 of 8, the
resume test in tests/train/test_train.py logged losses up to 0.03 apart and
ended with weights up to 1.1e-3 apart.

Padding is known from each example's length before masking, so the attention
mask is exact even when random replacement happens to draw the pad id.
"""

from __future__ import annotations

from typing import Any

import torch

MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the chosen tokens; the other 10% are kept as they are (BERT)


class MlmCollator:
    """``pad`` + ``mask``; calling it does both, masking from the global RNG unless given a generator."""

    def __init__(self, tokenizer: Any, special_ids: list[int], pad_id: int, mlm_probability: float = 0.15,
                 pad_to_multiple_of: int | None = 8):
        if tokenizer.mask_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no mask token; masked-LM training needs one")
        self.special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.pad_id = pad_id
        self.mask_id = int(tokenizer.mask_token_id)
        self.vocab_size = len(tokenizer)  # random replacement draws from every id, as transformers' collator does
        self.mlm_probability = mlm_probability
        self.multiple = pad_to_multiple_of or 1

    def pad(self, examples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``input_ids`` (batch x width, width a multiple of ``pad_to_multiple_of``) and ``attention_mask``."""
        lengths = torch.tensor([len(x) for x in examples])
        width = int(-(-int(lengths.max()) // self.multiple) * self.multiple)  # tensor cores like multiples of 8
        input_ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        for row, x in zip(input_ids, examples):
            row[: len(x)] = x
        attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def mask(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
             head_positions: bool = False) -> dict[str, torch.Tensor]:
        """A new batch: each non-special, non-pad token is chosen with ``mlm_probability``; a chosen token
        becomes ``<mask>`` (80%), a random id (10%) or stays (10%), and ``labels`` holds its original id
        (-100 at every other position). With ``head_positions``, also the flat indices of the positions
        drawn (a superset of the labelled ones) for the masked-positions-only head (train/model.py).

        One uniform draw per position decides both whether and how a token is masked. The draws are
        made on the generator's device (the global RNG's: the CPU, when none is given), so a generator
        gives the same masks whatever device the batch is on. On a GPU nothing here waits for it:
        which positions are drawn is decided on the CPU (its count known there), only that plan is
        copied over (pinned, asynchronously), and the batch is edited at those positions with index
        ops whose sizes the host already knows. A boolean-mask edit or selection would need the GPU's
        answer first; each such wait empties the GPU's queue, and the Trainer step on an H100 was
        then bound by how fast one CPU thread launches kernels (bench/gpu_train.py).
        """
        ids, attention = batch["input_ids"], batch["attention_mask"]
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(ids.shape, generator=generator, device=device).view(-1)
        random_ids = torch.randint(self.vocab_size, ids.shape, generator=generator, device=device).view(-1)
        p = self.mlm_probability
        drawn = (u < p).nonzero().squeeze(1)
        u_drawn = u[drawn]
        replace = torch.where(u_drawn < p * MASK_SHARE, self.mask_id,  # -1: keep the token as it is
                              torch.where(u_drawn < p * (MASK_SHARE + RANDOM_SHARE), random_ids[drawn], -1))
        plan = torch.stack([drawn, replace])
        if ids.is_cuda:
            plan = plan.pin_memory()
        drawn, replace = plan.to(ids.device, non_blocking=True)
        flat = ids.reshape(-1)
        original = flat[drawn]
        chosen = (attention.reshape(-1)[drawn] != 0) & ~torch.isin(original, self._special_on(ids.device))
        new = torch.where(chosen & (replace >= 0), replace, original)
        labels = torch.full_like(flat, -100).index_copy(0, drawn, torch.where(chosen, original, -100))
        out = {**batch, "input_ids": flat.index_copy(0, drawn, new).view_as(ids), "labels": labels.view_as(ids)}
        if head_positions:
            out["head_positions"] = drawn
        return out

    def _special_on(self, device: torch.device) -> torch.Tensor:
        """The special ids on ``device``, copied there once (a copy from pageable memory waits for the GPU)."""
        if self.special.device != device:
            self.special = self.special.to(device)
        return self.special

    def __call__(self, examples: list[torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.mask(self.pad(examples), generator)
