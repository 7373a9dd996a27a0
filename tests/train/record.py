"""Record every batch the Trainer computes a loss on, to recompute the loss by hand.

Used in-process by the tests, and as a torchrun script for the DDP test:
``torchrun --nproc_per_node 2 tests/train/record.py OUT_PREFIX <run_mlm.py flags>``
writes each rank's batches and a digest of its final weights.
"""

from __future__ import annotations

import hashlib
import os
import sys

import torch

import train.run as run_module
from train.run import MlmTrainer

RECORDED: list[tuple[bool, dict[str, torch.Tensor]]] = []
TRAINERS: list[MlmTrainer] = []


def install(setattr=setattr, initial_weights: str | None = None) -> None:
    """Wrap the trainer's loss and train(); pass ``monkeypatch.setattr`` so a test undoes it.

    ``initial_weights``: where to save the weights the first loss is computed with.
    """
    original_loss, original_train = MlmTrainer.compute_loss, run_module.train

    def compute_loss(self, model, inputs, *args, **kwargs):
        if initial_weights and not RECORDED:
            torch.save({k: v.detach().clone() for k, v in self.accelerator.unwrap_model(model).state_dict().items()},
                       initial_weights)
        RECORDED.append((model.training, {k: v.detach().clone() for k, v in inputs.items()}))
        return original_loss(self, model, inputs, *args, **kwargs)

    def train(*args, **kwargs):
        metrics, trainer = original_train(*args, **kwargs)
        TRAINERS.append(trainer)
        return metrics, trainer

    setattr(MlmTrainer, "compute_loss", compute_loss)
    setattr(run_module, "train", train)


def hand_losses(model, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    model.eval()
    with torch.no_grad():
        return [float(model(**b).loss) for b in batches]


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    from run_mlm import main

    prefix, argv = sys.argv[1], sys.argv[2:]
    rank = os.environ.get("RANK", "0")
    install(initial_weights=f"{prefix}.rank{rank}.init.pt")
    rc = main(argv)
    torch.save(RECORDED, f"{prefix}.rank{rank}.pt")
    with open(f"{prefix}.rank{rank}.digest", "w") as f:
        f.write(weights_digest(TRAINERS[0].model))
    sys.exit(rc)
