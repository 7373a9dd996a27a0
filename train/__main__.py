"""``python -m train`` / ``mlm-train``: train a masked LM on a preprocessed cache. Never tokenizes text."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def stopped_message(parsed_box: list, builds_cache: bool = False) -> Callable[[], str]:
    """What the interrupt message says, worked out when the run stops: the checkpoint to resume from,
    or that there is none (``parsed_box`` holds the parsed settings once parsing is done);
    ``builds_cache``: the command also preprocesses (run_mlm.py), so the cache's state is worth a word."""

    def say() -> str:
        from train.checkpoints import resume_hint

        out = parsed_box[0].training.output_dir if parsed_box else None
        cache = "the cache keeps its last complete state; " if builds_cache else ""
        return f"stopped; {cache}{resume_hint(out)}"

    return say


def train_and_report(parsed, check_inputs: bool, command: list[str] | None = None) -> int:
    """Train on the parsed settings and print the final metrics on one line (``command``: program and argv,
    recorded for the model card and the resume command)."""
    from train.run import train

    metrics, trainer = train(parsed.cache, parsed.model, parsed.mlm, parsed.training, parsed.run,
                             check_inputs=check_inputs, command=command)
    if trainer is not None and metrics:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())))
    return 0


def main(argv: list[str] | None = None) -> int:
    from common.cli import run_command

    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    box: list = []

    def body() -> int:
        from train.config import announce, parse

        parsed = parse(argv, "mlm-train")
        if parsed is None:  # --help
            return 0
        box.append(parsed)
        announce(parsed)
        return train_and_report(parsed, check_inputs=True, command=["mlm-train", *argv])

    return run_command(body, stopped_message(box))


if __name__ == "__main__":
    sys.exit(main())
