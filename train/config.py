"""Arguments of the train command: the shared cache arguments (common/config.py), model and
MLM arguments, and transformers' TrainingArguments, parsed strictly from flags or one JSON file.

The users' command line predates transformers v5: ``translate_legacy`` maps
its flags onto today's, one pure function for both the flags and a JSON
file. Parsing has no side effects; ``announce`` prints what the mapping did
and sets the environment it asks for, from ``main``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.cli import CliError, merge_repeated, read_config
from common.config import CacheArguments, refuse_other_commands_flags
from common.errors import UserError
from train.flags import (  # noqa: F401  (re-exported: the train stage's argument classes)
    LEGACY_KEYS,
    OWN_CLASSES,
    LegacyArguments,
    MlmArguments,
    ModelArguments,
    RunArguments,
    precheck,
)

if TYPE_CHECKING:
    from transformers import TrainingArguments


@dataclass
class Parsed:
    """A parsed command line, and what the legacy mapping asks ``announce`` to do."""

    cache: CacheArguments
    model: ModelArguments
    mlm: MlmArguments
    run: RunArguments
    training: TrainingArguments
    extra: tuple[Any, ...]  # the front's own argument dataclasses, in the order given
    notes: list[str]
    env: dict[str, str]


def translate_legacy(values: dict[str, Any], given: set[str], cuda: bool, world_size: int
                     ) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Settings with the old run_mlm.py flags mapped onto transformers v5's and the CPU fix-ups
    applied: (settings, notes for the user, environment variables to set). Pure.

    ``given``: the keys the user set (the rest are defaults), so a setting of
    the user's always wins over a fix-up.
    """
    out, notes, env = dict(values), [], {}
    if "evaluation_strategy" in given:
        out["eval_strategy"] = out["evaluation_strategy"]
        notes.append("note: --evaluation_strategy is --eval_strategy in transformers v5; mapped")
    if "model_dir" in given:
        out["resume_from_checkpoint"] = out["model_dir"]
        notes.append(f"note: --model_dir {out['model_dir']}: resuming from that checkpoint (--resume_from_checkpoint)")
    if "mlm" in given:
        notes.append("note: --mlm: this tool always trains a masked language model; the flag changes nothing")
    if "no_cuda" in given and out.get("no_cuda"):
        out["use_cpu"] = True
        notes.append("note: --no_cuda is --use_cpu in transformers v5; mapped")
    if "logging_dir" in given:
        env["TENSORBOARD_LOGGING_DIR"] = str(out["logging_dir"])
        if "report_to" not in given:
            out["report_to"] = "tensorboard"
    if out.get("fp16") and not cuda:
        out["fp16"] = False
        notes.append("WARNING: --fp16 needs a CUDA GPU and none is visible: training in fp32 "
                     "(transformers v5 would ignore the flag silently)")
    if not cuda and "dataloader_pin_memory" not in given:
        out["dataloader_pin_memory"] = False  # pinning needs an accelerator; otherwise a warning per loader
    if world_size > 1 and not cuda:
        out["use_cpu"] = True  # without it, torchrun on CPU trains unsynchronised copies
        if "ddp_backend" not in given:
            out["ddp_backend"] = "gloo"
    if world_size > 1 and "ddp_find_unused_parameters" not in given:
        # the Trainer's default for a transformers model is True: a second walk of the autograd graph every
        # step, and a warning on each rank that no parameter went unused (none does: every family's head and
        # embeddings take part, the masked-positions head too); a model that leaves one out is DDP's error,
        # which names this flag
        out["ddp_find_unused_parameters"] = False
    for key in LEGACY_KEYS:
        out.pop(key, None)
    return out, notes, env


def throughput_defaults(values: dict[str, Any], given: set[str], cuda: bool, bf16_ok: bool, tf32_ok: bool
                        ) -> tuple[dict[str, Any], list[str]]:
    """The train stage's defaults for speed, each only where the user chose nothing: (settings, a note naming them).

    Everywhere: an evaluation that reports the loss without gathering every
    logit. (The data order stays transformers' default, random batches:
    grouping by length pads less but costs model quality, README: Training
    quality.)
    On a GPU: bf16 where supported (unless --fp16 or --bf16 was given), TF32
    matmuls (Ampere+), fused AdamW, and 2 persistent DataLoader workers, so
    batching overlaps the GPU step. (Attention is already SDPA in transformers v5.)
    And nothing in a step waits for the GPU, so the CPU queues kernels ahead
    of it: batches are copied from pinned memory without waiting, and the
    Trainer's NaN/Inf filter of the logged loss is off (it reads the loss on
    the CPU after every micro-batch; a NaN loss then shows in the log instead
    of being averaged away). On an H100 these waits doubled roberta-base's
    step time (bench/gpu_train.py).
    """
    out, chosen = dict(values), []

    def default(key: str, value: Any, name: str, when: bool = True) -> None:
        if when and key not in given:
            out[key] = value
            chosen.append(name)

    default("prediction_loss_only", True, "evaluation without gathering logits")
    if cuda:
        default("bf16", True, "bf16", when=bf16_ok and not given & {"fp16", "bf16"})
        default("tf32", True, "TF32 matmuls", when=tf32_ok)
        default("optim", "adamw_torch_fused", "fused AdamW")
        default("dataloader_num_workers", 2, "2 DataLoader workers")
        default("dataloader_persistent_workers", True, "persistent workers", when=out.get("dataloader_num_workers", 0) > 0)
        default("accelerator_config", {"non_blocking": True}, "batches copied to the GPU without waiting",
                when=out.get("dataloader_pin_memory", True))
        default("logging_nan_inf_filter", False, "no per-step NaN check of the loss")
    notes = [f"note: throughput defaults: {', '.join(chosen)} (each one's flag overrides it)"] if chosen else []
    return out, notes


def _resume_without_value(argv: list[str]) -> list[str]:
    """``--resume_from_checkpoint`` with no value means the last checkpoint of --output_dir."""
    out = list(argv)
    for i, a in enumerate(out):
        if a in ("--resume_from_checkpoint", "--resume-from-checkpoint") and (i + 1 == len(out)
                                                                            or out[i + 1].startswith("--")):
            out.insert(i + 1, "latest")
    return out


def _given(argv: list[str]) -> set[str]:
    return {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}  # --report-to too


def parse(argv: list[str], prog: str, cache_class: type = CacheArguments, extra: tuple[type, ...] = ()
          ) -> Parsed | None:
    """Strict parse (an unknown flag or key is an error) of flags or of one JSON file of the same keys;
    None when ``--help`` was asked for (and printed).

    Both go through ``translate_legacy``, then the same dataclasses. Help and
    unknown flags are answered before torch and transformers are imported.
    """
    if precheck(_resume_without_value(argv), prog, (cache_class, *OWN_CLASSES, *extra)):
        return None
    import torch
    from transformers import HfArgumentParser, TrainingArguments

    class _Parser(HfArgumentParser):
        def error(self, message: str):  # a bad value is one line, not argparse's usage block
            raise UserError(f"{message}; see {self.prog} --help")

    classes = (cache_class, ModelArguments, MlmArguments, RunArguments, TrainingArguments, *extra, LegacyArguments)
    parser = _Parser(classes, prog=prog, allow_abbrev=False)  # strict: no prefix of a flag
    if len(argv) == 1 and argv[0].endswith(".json"):
        try:
            values = read_config(argv[0])
        except CliError as e:
            raise UserError(str(e)) from None
        given, repeated = set(values), []
    else:
        argv = _resume_without_value(argv)
        argv, repeated = merge_repeated(argv)
        namespace, unknown = parser.parse_known_args(argv)
        if unknown:
            refuse_other_commands_flags(_given(unknown), prog)
            raise UserError(f"unrecognized arguments: {' '.join(unknown)}; see {prog} --help")
        values, given = vars(namespace), _given(argv)
    refuse_other_commands_flags(given, prog)
    cuda = torch.cuda.is_available()
    values, notes, env = translate_legacy(values, given, cuda, int(os.environ.get("WORLD_SIZE", "1")))
    values, speed_notes = throughput_defaults(values, given, cuda, cuda and torch.cuda.is_bf16_supported(),
                                              cuda and torch.cuda.get_device_capability(0)[0] >= 8)
    notes += speed_notes + repeated
    try:
        objs = parser.parse_dict(values, allow_extra_keys=False)
    except (ValueError, TypeError) as e:  # an unknown key, a missing or inconsistent setting
        raise UserError(f"{' '.join(str(e).split())}; see {prog} --help") from None
    cache, model, mlm, run, training, *rest = objs
    check_run_length(training)
    return Parsed(cache, model, mlm, run, training, tuple(rest[: len(extra)]), notes, env)


def check_run_length(training: TrainingArguments) -> None:
    """Refuse a run length that trains nothing. In TrainingArguments, ``max_steps`` -1 (its default) means
    "train --num_train_epochs epochs"; 0 or below -1 is no length at all, yet the Trainer trained one step
    (and the start-up table counted the epochs' samples); ``num_train_epochs`` 0 or less likewise."""
    if training.max_steps == 0 or training.max_steps < -1:
        raise UserError(f"--max_steps {training.max_steps}: give a positive number of optimizer steps, or leave "
                        "it out (-1, the default) to train --num_train_epochs epochs")
    if training.max_steps < 0 and not training.num_train_epochs > 0:
        raise UserError(f"--num_train_epochs {training.num_train_epochs:g}: give a positive number of epochs "
                        "(a fraction is one), or --max_steps N to train N optimizer steps")


def announce(parsed: Parsed) -> None:
    """The side effects of parsing, applied by ``main``: say what was mapped, set the environment."""
    for note in parsed.notes:
        print(note, file=sys.stderr)
    os.environ.update(parsed.env)
