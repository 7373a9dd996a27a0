"""The users' old command line, kept working verbatim: bring the cache up to date, then train
(``--build_dataset_only`` stops after preprocessing).

    python run_mlm.py --tokenizer_name_or_path ... --train_dir ... --datasets_cache_dir ... [flags]

The one place that uses both stages: it takes the preprocess flags and the
train flags, preprocesses (rank 0 only under torchrun, the others then find
the cache fresh), then trains without hashing the text a second time.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


@dataclass
class FrontArguments:
    """run_mlm.py's own."""

    build_dataset_only: bool = field(default=False, metadata={"help": "Preprocess, then stop before training."})


def main(argv: list[str] | None = None) -> int:
    from common.cli import run_command
    from train.__main__ import stopped_message, train_and_report

    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    box: list = []

    def body() -> int:
        from preprocess.config import PreprocessConfig
        from preprocess.corpora import run_all
        from train.config import announce, parse

        parsed = parse(argv, "run_mlm.py", cache_class=PreprocessConfig, extra=(FrontArguments,))
        if parsed is None:  # --help
            return 0
        box.append(parsed)
        announce(parsed)
        (front,) = parsed.extra
        with parsed.training.main_process_first(desc="preprocessing"):  # rank 0 builds, the others find it fresh
            for name, report in run_all(parsed.cache, ["run_mlm.py", *argv]):
                print(f"{name} {report.line()}" if name else report.line())
        if front.build_dataset_only:
            return 0
        return train_and_report(parsed, check_inputs=False,  # just preprocessed: fresh by construction
                                command=[os.path.abspath(__file__), *argv])

    return run_command(body, stopped_message(box, builds_cache=True))


if __name__ == "__main__":
    sys.exit(main())
