"""The dir a training run writes (``--output_dir``), defined once: train/ writes it, ``mlm-inspect run`` reads it.

    <output_dir>/
      .train.lock                        flock()ed by the job training into it (train/checkpoints.py)
      checkpoint-<step>/                 a committed checkpoint: the Trainer's files, trainer_state.json among them
        data.json                        what it trained on: each split's fingerprint, step, samples seen,
                                         the data it trained on before (train/provenance.py)
        manifests/<split>.json           the manifests it trained on
        command.json                     the command of the process that wrote it (below)
        README.md, training_curves.png   its model card (train/model_card.py)
      .partial-checkpoint-<step>/checkpoint-<step>/   a checkpoint being written, renamed up when complete
      .deleting-checkpoint-<step>/       a checkpoint being rotated away
      config.json, model.safetensors, tokenizer files, manifests/, provenance.json, command.json,
      all_results.json                   the final model and its records (a finished run)
      README.md, training_curves.png     the model card: the newest checkpoint's while training, the final one's after
      trainer_state.json                 written last by a finished run: its presence marks one

``command.json``: ``{"program": "mlm-train" or run_mlm.py's absolute path, "argv": [...] as given, "cwd": where it ran,
"absolute": argv with every relative path that existed made absolute, "python": sys.executable}``, so a
resume command pastes from any directory. Imports neither torch nor transformers (``mlm-inspect`` runs on CPU nodes).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from common.format import FormatError
from common.json_files import read_json
from common.rebuild import script_command

CHECKPOINT = re.compile(r"checkpoint-(\d+)")
FINISHED_MARK = "trainer_state.json"  # at the top of --output_dir: written last by a finished run
PARTIAL = ".partial-"  # a checkpoint being written: .partial-checkpoint-<step>
DELETING = ".deleting-"  # a checkpoint being rotated away
LOCK = ".train.lock"
DATA_RECORD = "data.json"
PROVENANCE = "provenance.json"
COMMAND_FILE = "command.json"
CARD_FILE = "README.md"
CURVES_FILE = "training_curves.png"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

# Flags whose value is a path (or NAME=DIR entries of paths): made absolute in a command that pastes anywhere.
PATH_FLAGS = ("tokenizer_name_or_path", "datasets_cache_dir", "output_dir", "config_name", "model_name_or_path",
              "resume_from_checkpoint", "model_dir", "logging_dir", "train_dir", "eval_dir", "deepspeed")
RESUME_FLAGS = ("resume_from_checkpoint", "model_dir")  # --model_dir: the old name of --resume_from_checkpoint
MODULES = {"mlm-train": "train"}  # a console script: its module, for ``python -m`` where the script is not found


def _flag(arg: str) -> str | None:
    """``--per-device-train-batch-size=3`` -> ``per_device_train_batch_size``; None for a value."""
    return arg[2:].split("=", 1)[0].replace("-", "_") if arg.startswith("--") else None


def _absolute_value(value: str, cwd: str) -> str:
    """``value`` with each path in it that exists under ``cwd`` made absolute: one path, or comma-separated
    dirs and NAME=DIR entries. Anything that is not an existing path (a hub name, ``latest``) is left."""
    here = lambda p: os.path.join(cwd, p)  # noqa: E731
    if os.path.isabs(value) or not value:
        return value
    if os.path.exists(here(value)):
        return os.path.normpath(here(value))
    parts = []
    for part in value.split(","):
        name, eq, rest = part.partition("=")
        if eq and "/" not in name and rest and not os.path.isabs(rest) and os.path.exists(here(rest)):
            parts.append(f"{name}={os.path.normpath(here(rest))}")
        elif not os.path.isabs(part) and part and os.path.exists(here(part)):
            parts.append(os.path.normpath(here(part)))
        else:
            parts.append(part)
    return ",".join(parts)


def absolute_argv(argv: list[str], cwd: str) -> list[str]:
    """``argv`` with the values of path flags (``PATH_FLAGS``), and a config file given alone, made absolute
    where they name a path that exists from ``cwd``; every other argument as given."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        return [_absolute_value(argv[0], cwd)]
    out: list[str] = []
    for k, arg in enumerate(argv):
        flag = _flag(arg)
        if flag in PATH_FLAGS and "=" in arg:
            head, value = arg.split("=", 1)
            out.append(f"{head}={_absolute_value(value, cwd)}")
        elif flag is None and k > 0 and _flag(argv[k - 1]) in PATH_FLAGS and "=" not in argv[k - 1]:
            out.append(_absolute_value(arg, cwd))
        else:
            out.append(arg)
    return out


def command_record(program: str, argv: list[str], cwd: str | None = None) -> dict[str, Any]:
    """What ``command.json`` holds for a process started as ``program argv`` in ``cwd``."""
    cwd = cwd or os.getcwd()
    return {"program": program, "argv": list(argv), "cwd": cwd, "absolute": absolute_argv(list(argv), cwd),
            "python": sys.executable}


def without_flags(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` less the flags ``names`` and their values (``--flag V``, ``--flag=V``, or a flag without one)."""
    out, skip = [], False
    for k, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if _flag(arg) in names:
            nxt = argv[k + 1] if k + 1 < len(argv) else None
            skip = "=" not in arg and nxt is not None and not nxt.startswith("--")
            continue
        out.append(arg)
    return out


def program_words(record: dict[str, Any]) -> list[str]:
    """How to call the record's program from anywhere: ``mlm-train`` where the shell finds this installation's,
    else its absolute path beside this Python; run_mlm.py by its absolute path under the Python that ran it."""
    program = str(record.get("program", "mlm-train"))
    if program.endswith(".py"):  # recorded by its absolute path
        return [str(record.get("python") or sys.executable), program]
    return script_command(program, MODULES.get(program))


def command_line(record: dict[str, Any], resume: bool) -> str:
    """The record's command, to paste from any directory: resuming its run (``--resume_from_checkpoint latest``,
    without --overwrite_output_dir, which a resume never needs), or, ``resume`` False, starting it afresh
    (without its resume flags)."""
    argv = [str(a) for a in record.get("absolute") or record.get("argv") or []]
    if config_file(record):  # it replaces every flag: the resume key goes into it (``config_file``)
        return shlex.join([*program_words(record), *argv])
    argv = without_flags(argv, RESUME_FLAGS + (("overwrite_output_dir",) if resume else ()))
    return shlex.join([*program_words(record), *argv, *(["--resume_from_checkpoint", "latest"] if resume else [])])


def recorded_output_dir(record: dict[str, Any]) -> str | None:
    """The --output_dir the recorded command trained into (the last one given counts), absolute where it was."""
    argv = [str(a) for a in record.get("absolute") or record.get("argv") or []]
    found = None
    for k, arg in enumerate(argv):
        if _flag(arg) == "output_dir":
            found = arg.split("=", 1)[1] if "=" in arg else argv[k + 1] if k + 1 < len(argv) else found
    return found


def moved_to(record: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """The record with every --output_dir value made ``output_dir``: a run dir moved or copied since it was
    written resumes where it is now, not in the dir it left (which may hold another run, or nothing)."""
    def fix(argv: list[Any]) -> list[str]:
        out = [str(a) for a in argv]
        for k, arg in enumerate(out):
            if _flag(arg) == "output_dir":
                if "=" in arg:
                    out[k] = f"{arg.split('=', 1)[0]}={output_dir}"
                elif k + 1 < len(out):
                    out[k + 1] = str(output_dir)
        return out
    return {**record, **{key: fix(record[key]) for key in ("argv", "absolute") if isinstance(record.get(key), list)}}


def config_file(record: dict[str, Any]) -> str | None:
    """The JSON config file the recorded command was given instead of flags (absolute), or None."""
    argv = [str(a) for a in record.get("absolute") or record.get("argv") or []]
    return argv[0] if len(argv) == 1 and argv[0].endswith(".json") else None


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON record of the run dir (data.json, command.json, trainer_state.json ...), or None if absent or
    unreadable: a reader reports what it finds, and a missing record is one of those things."""
    try:
        d = read_json(path)
    except FormatError:
        return None
    return d if isinstance(d, dict) else None


def missing_weights(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` holds no model to resume from, in words (its weights deleted, say by hand to save
    space); None when they are there."""
    if any((checkpoint / w).is_file() and (checkpoint / w).stat().st_size > 0 for w in WEIGHTS):
        return None
    return f"no model weights ({' or '.join(WEIGHTS[::2])})"


def step_of(state: dict[str, Any] | None) -> int | None:
    try:
        return int(state["global_step"]) if state is not None else None
    except (KeyError, TypeError, ValueError):
        return None


SHORT = 12  # characters of a fingerprint in words (the JSON records keep them whole)


def short(fingerprint: Any) -> str:
    return str(fingerprint)[:SHORT] if fingerprint else "(none)"


def data_eras(source: dict[str, Any] | None, step: int | None) -> list[dict[str, Any]]:
    """The data the run trained on, era by era (``from_step``, ``until_step``, each split's fingerprint), from
    a final model's provenance.json (``data``: a list) or a checkpoint's data.json (``history`` and ``data``)."""
    if not source:
        return []
    if isinstance(source.get("data"), list):
        raw = [(e.get("from_step"), e.get("until_step"), e.get("data")) for e in source["data"] if isinstance(e, dict)]
    else:
        history = [h for h in source.get("history", []) if isinstance(h, dict)]
        starts = [0, *(h.get("until_step") for h in history)]
        raw = [(starts[k], h.get("until_step"), h.get("data")) for k, h in enumerate(history)]
        raw.append((starts[-1], source.get("step", step), source.get("data")))
    return [{"from_step": a, "until_step": b, "splits": {n: s.get("fingerprint") for n, s in
                                                          ((d or {}).get("splits") or {}).items()
                                                          if isinstance(s, dict)}} for a, b, d in raw]


def data_changes(eras: list[dict[str, Any]]) -> list[str]:
    """Where the data changed, one line an era boundary: which splits were added, removed or changed."""
    out = []
    for before, after in zip(eras, eras[1:]):
        was, now = before["splits"], after["splits"]
        parts = [f"{n} {short(was.get(n))} -> {short(now.get(n))}" for n in sorted(set(was) | set(now))
                 if was.get(n) != now.get(n)]
        out.append(f"at step {after['from_step']}: {', '.join(parts) or 'the data order or packing'}")
    return out


def latest_losses(state: dict[str, Any] | None) -> dict[str, Any]:
    """The latest training loss and the latest evaluation (every eval_*_loss logged at its step)."""
    history = [h for h in (state or {}).get("log_history", []) if isinstance(h, dict)]
    train = next((h for h in reversed(history) if "loss" in h), None)
    evals = [h for h in history if any(k.startswith("eval_") and k.endswith("_loss") for k in h)]
    out: dict[str, Any] = {}
    if train is not None:
        out["train"] = {"step": train.get("step"), "loss": train["loss"]}
    if evals:
        step = evals[-1].get("step")
        found = {k: v for h in evals if h.get("step") == step for k, v in h.items()
                 if k.startswith("eval_") and k.endswith("_loss")}
        out["eval"] = {"step": step, **found}
    return out
