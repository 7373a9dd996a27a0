"""The model card: ``README.md`` and ``training_curves.png`` beside a checkpoint and the final model.

A model found on a disk a year later should say which data, by content hash,
made it, how, and how well. Everything the card says is read from what the
run already records in the dir it describes (config.json and the weights,
the manifests, data.json or provenance.json, trainer_state.json's log
history, command.json), plus what only the training process knows (the
Trainer's settings, the hardware), so the card adds no state of its own. The
YAML header is the Hugging Face hub's (``huggingface_hub.ModelCard.load``
parses it). Written into a checkpoint before its rename (so it is part of the
commit), into --output_dir by an atomic replace after each commit, and at the
end beside the final model.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.format import tmp_name
from common.json_files import write_json_atomic
from common.run_dir import (
    CARD_FILE,
    COMMAND_FILE,
    CURVES_FILE,
    DATA_RECORD,
    FINISHED_MARK,
    PARTIAL,
    PROVENANCE,
    command_line,
    data_eras,
    read_record,
)
from train import curves
from train.card_sections import (
    RunFacts,
    data_section,
    model_section,
    results_section,
    tokenizer_section,
    training_section,
)

OUR_TAG = "- mlm-pretrain"  # the card's tag, as its YAML header lists it: a card this tool wrote


def trainer_settings(targs: Any) -> dict[str, str]:
    """The Trainer's settings a reader of the card needs, in words."""
    scheduler = getattr(targs.lr_scheduler_type, "value", targs.lr_scheduler_type)
    warmup = targs.warmup_steps
    warm = f"{warmup:.0%} of the steps" if isinstance(warmup, float) and 0 < warmup < 1 else f"{int(warmup)} steps"
    precision = "bf16" if targs.bf16 else "fp16" if targs.fp16 else "fp32"
    return {"learning rate": f"{targs.learning_rate:g} (peak), {scheduler} schedule, warmup {warm}",
            "optimizer": f"{getattr(targs.optim, 'value', targs.optim)}, weight decay {targs.weight_decay:g}, "
                         f"gradient clipping {targs.max_grad_norm:g}",
            "precision": precision + (", TF32 matmuls" if targs.tf32 else ""),
            "batch": f"{targs.per_device_train_batch_size} per device x {max(targs.world_size, 1)} process(es) x "
                     f"{targs.gradient_accumulation_steps} accumulation step(s)",
            "seed": f"{targs.seed} (data order and masks: {targs.data_seed if targs.data_seed is not None else targs.seed})"}


def hardware(targs: Any) -> str:
    """The devices this process trains on, e.g. ``8 x NVIDIA H100 80GB HBM3`` or ``CPU, 1 process``."""
    import torch

    processes = max(targs.world_size, 1)
    if targs.device.type == "cuda":
        devices = processes * max(targs.n_gpu, 1)
        return f"{devices} x {torch.cuda.get_device_name(targs.device)}"
    return f"{targs.device.type.upper()}, {processes} process{'es' if processes > 1 else ''}"


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(tmp_name(dst.name, dotted=True))
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(tmp_name(path.name, dotted=True))
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class ModelCard:
    """Writes the card of one run: ``checkpoint`` into a checkpoint being saved, ``publish`` the committed
    checkpoint's card into --output_dir, ``final`` beside the final model."""

    def __init__(self, facts: RunFacts):
        self.facts = facts
        self.missing: str | None = curves.NOTHING_YET  # why the last card written has no picture (None: it has)

    def start_over(self, output_dir: Path) -> None:
        """A fresh run (--overwrite_output_dir) removes the card an earlier run left in --output_dir, which would
        describe that run (and name its deleted checkpoints) until this one's first save."""
        card = output_dir / CARD_FILE
        if card.is_file() and OUR_TAG in card.read_text(encoding="utf-8", errors="replace"):
            for name in (CARD_FILE, CURVES_FILE, COMMAND_FILE):
                (output_dir / name).unlink(missing_ok=True)

    def checkpoint(self, where: Path) -> None:
        """Into a checkpoint dir that is still being written: its command, picture and card."""
        _guarded(self._write, where, where, "checkpoint")

    def publish(self, checkpoint: Path, output_dir: Path) -> None:
        """--output_dir's card and picture while the run trains: its newest checkpoint's, each replaced at once."""
        _guarded(self._publish, checkpoint, output_dir)

    def final(self, output_dir: Path, state: dict[str, Any]) -> None:
        """Beside the final model, before its trainer_state.json (``state``), which is written last: it marks
        a finished run."""
        _guarded(self._write, output_dir, output_dir, "final", state)

    def _publish(self, checkpoint: Path, output_dir: Path) -> None:
        picture = checkpoint / CURVES_FILE
        if picture.is_file():
            _atomic_copy(picture, output_dir / CURVES_FILE)
        else:
            (output_dir / CURVES_FILE).unlink(missing_ok=True)
        _write_text_atomic(output_dir / CARD_FILE, card_text(checkpoint, self.facts, "running", self.missing))

    def _write(self, source: Path, where: Path, kind: str, state: dict[str, Any] | None = None) -> None:
        if self.facts.command is not None:
            write_json_atomic(where / COMMAND_FILE, self.facts.command)
        state = state if state is not None else read_record(source / FINISHED_MARK) or {}
        self.missing = curves.draw(state.get("log_history", []), where / CURVES_FILE)
        if self.missing:
            (where / CURVES_FILE).unlink(missing_ok=True)
        _write_text_atomic(where / CARD_FILE, card_text(source, self.facts, kind, self.missing, state))


def card_text(src: Path, facts: RunFacts, kind: str, missing: str | None, state: dict[str, Any] | None = None) -> str:
    """The card of the model in ``src`` (a checkpoint, or the final model's dir): ``kind`` is ``checkpoint``,
    ``running`` (--output_dir's copy of its newest checkpoint's) or ``final``; ``missing``: why there is no
    picture beside it (None: there is); ``state``: the trainer state, when it is not in ``src`` yet."""
    state = state if state is not None else read_record(src / FINISHED_MARK) or {}
    step = int(state.get("global_step", 0))
    record = read_record(src / (PROVENANCE if kind == "final" else DATA_RECORD)) or {}
    eras = data_eras(record, step)
    if kind == "final":
        data = ((record.get("data") or [{}])[-1] or {}).get("data") or {}
    else:
        data = record.get("data") or {}
    seen = record.get("tokens_seen") if isinstance(record.get("tokens_seen"), dict) else None
    config = read_record(src / "config.json") or {}
    history = [h for h in state.get("log_history", []) if isinstance(h, dict)]
    samples = facts.samples_at(step)
    sections = [
        _header(facts, config),
        _title(src, kind, step, state.get("max_steps")),
        f"![training curves]({CURVES_FILE})" if missing is None else f"({missing})",
        model_section(src, facts, config),
        tokenizer_section(src),
        data_section(data, eras, samples, seen),
        training_section(facts, state, history, step, samples, kind),
        results_section(history, facts.max_eval_samples),
        _reproduce(facts, eras),
        _use(src),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _header(facts: RunFacts, config: dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    model_type = str(config.get("model_type") or "masked-lm")
    data = ModelCardData(language=facts.language, license=facts.license, library_name="transformers",
                         pipeline_tag="fill-mask", tags=["fill-mask", "masked-lm", model_type, OUR_TAG[2:]])
    return f"---\n{data.to_yaml()}\n---"


def home(src: Path) -> Path:
    """Where ``src`` will be once committed: a checkpoint being written sits in ``.partial-<its name>/``."""
    return src.parent.parent / src.name if src.parent.name.startswith(PARTIAL) else src


def _title(src: Path, kind: str, step: int, target: Any) -> str:
    of = f" of {target:,}" if isinstance(target, int) and target > 0 else ""
    if kind == "final":
        return f"# {src.name}\n\nA masked language model pretrained by mlm-pretrain (`mlm-train`): {step:,} optimizer steps."
    src = home(src)
    run = src.parent
    status = (f"A checkpoint at step {step:,}{of} of a run that was training when it was saved" if kind == "checkpoint"
              else f"The run is training: this is its newest checkpoint's card ({src.name}, step {step:,}{of}), "
                   "refreshed at each save; the final model's replaces it")
    return f"# {run.name} ({src.name})\n\n{status}. Where the run is now: `mlm-inspect run {run.absolute()}`."


def _reproduce(facts: RunFacts, eras: list[dict[str, Any]]) -> str:
    if facts.command is None:
        return "## Reproduce\n\nnot recorded (trained from Python, not from a command line)"
    notes = ["The same command on a cache of the same fingerprints gives the same samples and masks in the same "
             "order, on any number of processes (into a new --output_dir, or with --overwrite_output_dir)."]
    if len(eras) > 1:
        notes.append("This run changed data on the way (above): a rerun trains on the cache as it is now throughout.")
    return f"## Reproduce\n\n```bash\n{command_line(facts.command, resume=False)}\n```\n\n" + " ".join(notes)


def _use(src: Path) -> str:
    return ("## Use\n\n```python\nfrom transformers import pipeline\n\n"
            f"fill = pipeline(\"fill-mask\", model=\"{home(src).absolute()}\")\n"
            "print(fill(f\"... {fill.tokenizer.mask_token} ...\"))\n```")


def facts_of(targs: Any, architecture: str, command: dict[str, Any] | None, language: list[str] | None,
             license_id: str | None, global_batch: int, samples_at: Callable[[int], int],
             max_eval_samples: int | None = None) -> RunFacts:
    return RunFacts(command, architecture, trainer_settings(targs), global_batch, hardware(targs), language,
                    license_id, samples_at, time.time(), max_eval_samples)


def _guarded(write: Callable[..., None], *args: Any) -> None:
    """A card that cannot be written (a full disk, a record a future version words otherwise) never stops a
    run days in: its checkpoint is what matters. One warning line instead; the tests assert there is none."""
    try:
        write(*args)
    except Exception as e:  # noqa: BLE001
        print(f"warning: the model card was not written ({type(e).__name__}: {e}); training goes on", file=sys.stderr)
