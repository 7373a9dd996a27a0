"""Arguments of the train command: the cache/tokenizer dataclass shared with preprocess,
model and MLM arguments, and transformers' TrainingArguments, parsed strictly.

The users' command line predates transformers v5; ``translate_legacy`` maps
its flags onto today's before parsing, saying what it did.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from common.errors import UserError
from preprocess.config import PreprocessConfig
from train.model import ARCHITECTURES


@dataclass
class ModelArguments:
    architecture: str = field(
        default="roberta-base", metadata={"help": f"Shipped model config: {', '.join(ARCHITECTURES)}."}
    )
    config_name: str | None = field(default=None, metadata={"help": "A config.json of one's own (overrides --architecture)."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Local checkpoint to start from instead of random weights."}
    )


@dataclass
class MlmArguments:
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens masked per batch."})
    build_dataset_only: bool = field(default=False, metadata={"help": "Preprocess, then stop before training (run_mlm.py)."})
    model_dir: str | None = field(
        default=None, metadata={"help": "Old name: resume from this checkpoint (now --resume_from_checkpoint)."}
    )
    evaluation_strategy: str | None = field(default=None, metadata={"help": "Old name of --eval_strategy."})
    logging_dir: str | None = field(
        default=None, metadata={"help": "TensorBoard log dir; turns tensorboard reporting on."}
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.mlm_probability < 1.0:
            raise UserError(f"--mlm_probability {self.mlm_probability}: must be between 0 and 1")


ARG_CLASSES = (PreprocessConfig, ModelArguments, MlmArguments, TrainingArguments)


def _flag_value(argv: list[str], flag: str) -> tuple[int, str | None] | None:
    """(index, value) of ``flag`` given as ``--f v`` or ``--f=v``; None if absent."""
    for i, a in enumerate(argv):
        if a == flag:
            return i, argv[i + 1] if i + 1 < len(argv) else None
        if a.startswith(flag + "="):
            return i, a.split("=", 1)[1]
    return None


def _drop(argv: list[str], flag: str, takes_value: bool) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == flag:
            skip = takes_value and i + 1 < len(argv)
            continue
        if a.startswith(flag + "="):
            continue
        out.append(a)
    return out


def translate_legacy(argv: list[str], cuda: bool) -> list[str]:
    """Map the old run_mlm.py flags onto transformers v5 ones, printing each mapping."""
    argv = list(argv)

    def note(msg: str) -> None:
        print(f"note: {msg}", file=sys.stderr)

    if (found := _flag_value(argv, "--evaluation_strategy")) is not None:
        argv = _drop(argv, "--evaluation_strategy", True) + ["--eval_strategy", str(found[1])]
        note("--evaluation_strategy is --eval_strategy in transformers v5; mapped")
    if (found := _flag_value(argv, "--model_dir")) is not None:
        argv = _drop(argv, "--model_dir", True) + ["--resume_from_checkpoint", str(found[1])]
        note(f"--model_dir {found[1]}: resuming from that checkpoint (--resume_from_checkpoint)")
    if (found := _flag_value(argv, "--logging_dir")) is not None:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(found[1])
        if _flag_value(argv, "--report_to") is None:
            argv += ["--report_to", "tensorboard"]
    if "--fp16" in argv and not cuda:
        argv = _drop(argv, "--fp16", False)
        print("WARNING: --fp16 needs a CUDA GPU and none is visible: training in fp32 "
              "(transformers v5 would ignore the flag silently)", file=sys.stderr)
    if not cuda and _flag_value(argv, "--dataloader_pin_memory") is None:
        argv += ["--dataloader_pin_memory", "false"]  # pinning needs an accelerator; otherwise a warning per loader
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not cuda:
        # Without use_cpu, torchrun on CPU trains unsynchronised copies.
        if "--use_cpu" not in argv:
            argv.append("--use_cpu")
        if _flag_value(argv, "--ddp_backend") is None:
            argv += ["--ddp_backend", "gloo"]
    return argv


def parse(argv: list[str], prog: str) -> tuple[PreprocessConfig, ModelArguments, MlmArguments, TrainingArguments]:
    """Strict parse (an unknown flag is an error) of flags or of one JSON file."""
    import torch

    parser = HfArgumentParser(ARG_CLASSES, prog=prog, allow_abbrev=False)  # strict: no prefix of a flag
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            return parser.parse_json_file(argv[0], allow_extra_keys=False)
        return parser.parse_args_into_dataclasses(args=translate_legacy(argv, torch.cuda.is_available()))
    except ValueError as e:
        raise UserError(f"{e}; see {prog} --help") from None
