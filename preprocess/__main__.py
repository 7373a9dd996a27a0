"""``python -m preprocess`` / ``mlm-preprocess``: tokenize text shards into the cache."""

from __future__ import annotations

import sys

from preprocess.errors import PreprocessError


def parse(argv: list[str]):
    from transformers import HfArgumentParser

    from preprocess.config import PreprocessConfig

    parser = HfArgumentParser(
        PreprocessConfig,
        prog="mlm-preprocess",
        description="Tokenize every *.<ext> shard of --train_dir (and --eval_dir) into memory-mapped token "
        "arrays under --datasets_cache_dir, with a manifest.json. Reruns redo only what changed.",
    )
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            (cfg,) = parser.parse_json_file(argv[0], allow_extra_keys=False)
        else:
            (cfg,) = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as e:  # unknown flags: strict, never silently dropped
        raise PreprocessError(f"{e}; see mlm-preprocess --help") from None
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse(argv)
        from preprocess.run import run

        reports = run(cfg, ["mlm-preprocess", *argv])
    except PreprocessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the cache keeps its last complete state; rerun to resume", file=sys.stderr)
        return 130
    for r in reports:
        print(r.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
