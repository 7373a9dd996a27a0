"""``python -m train`` / ``mlm-train``: train a masked LM on a preprocessed cache. Never tokenizes text."""

from __future__ import annotations

import os
import sys

STOPPED = ("stopped; the cache keeps its last complete state, and the last checkpoint saved in --output_dir is "
           "where to resume (--resume_from_checkpoint)")


def train_and_report(parsed, check_inputs: bool) -> int:
    """Train on the parsed settings and print the final metrics on one line."""
    from train.run import train

    metrics, _ = train(parsed.cache, parsed.model, parsed.mlm, parsed.training, check_inputs=check_inputs)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())))
    return 0


def main(argv: list[str] | None = None) -> int:
    from common.cli import run_command

    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def body() -> int:
        from train.config import announce, parse

        parsed = parse(argv, "mlm-train")
        announce(parsed)
        return train_and_report(parsed, check_inputs=True)

    return run_command(body, STOPPED)


if __name__ == "__main__":
    sys.exit(main())
