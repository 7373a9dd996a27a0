"""``python -m train`` / ``mlm-train``: train a masked LM on a preprocessed cache. Never tokenizes text."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None, prog: str = "mlm-train", preprocess_first: bool = False) -> int:
    """Parse, (optionally) preprocess, train. ``preprocess_first`` is the run_mlm.py front's behaviour."""
    from common.cli import run_command

    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def body() -> int:
        from train.config import parse

        cfg, margs, mlm, targs = parse(argv, prog)
        if preprocess_first:
            from preprocess.run import run as preprocess

            with targs.main_process_first(desc="preprocessing"):  # rank 0 builds, the others then find it fresh
                for report in preprocess(cfg, [prog, *argv]):
                    print(report.line())
            if mlm.build_dataset_only:
                return 0
        from train.run import train

        metrics, _ = train(cfg, margs, mlm, targs, check_inputs=not preprocess_first)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())))
        return 0

    return run_command(body, "stopped; the cache keeps its last complete state, and the last checkpoint saved in "
                             "--output_dir is where to resume (--resume_from_checkpoint)")


if __name__ == "__main__":
    sys.exit(main())
