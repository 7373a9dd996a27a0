"""``python -m preprocess`` / ``mlm-preprocess``: tokenize text shards into the cache."""

from __future__ import annotations

import os
import sys

from common.errors import UserError

DESCRIPTION = (
    "Tokenize every *.<ext> shard of --train_dir (and --eval_dir) into token arrays (.npy) under "
    "--datasets_cache_dir, with a manifest.json. Reruns redo only what changed."
)


def parse(argv: list[str]):
    from common.cli import CliError, parse_dataclass
    from preprocess.config import PreprocessConfig

    try:
        return parse_dataclass(PreprocessConfig, argv, "mlm-preprocess", DESCRIPTION)
    except CliError as e:  # unknown flags: strict, never silently dropped
        raise UserError(f"{e}; see mlm-preprocess --help") from None


def main(argv: list[str] | None = None) -> int:
    from common.cli import run_command

    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        cfg = parse(argv)
        from preprocess.corpora import run_all

        for name, r in run_all(cfg, ["mlm-preprocess", *argv]):
            print(f"{name} {r.line()}" if name else r.line())
        return 0

    return run_command(body, "temp files removed, the cache keeps its last complete state; rerun to resume")


def cli() -> int:
    """The console script: ``main`` in a process that never loads torch.

    transformers imports torch whenever it is installed (about 1 s here, in
    the parent and every worker); tokenizing needs none of it.
    """
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]  # 'import torch' now fails fast
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "PyTorch was not found": that is the point
    return main()


if __name__ == "__main__":
    sys.exit(cli())
