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

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    data_changes,
    data_eras,
    read_record,
)
from common.tokenizer import TRAINING_FILE
from train import curves


@dataclass(frozen=True)
class RunFacts:
    """What only the training process knows; the rest of the card is read from the dir it describes."""

    command: dict[str, Any] | None  # common/run_dir.py command_record; None: train() called from Python
    architecture: str
    settings: dict[str, str]  # the Trainer's settings, in words, by the card's row names
    global_batch: int
    hardware: str
    language: list[str] | None
    license: str | None
    samples_at: Callable[[int], int]  # samples trained by an optimizer step (train/provenance.py's count)
    started: float  # time.time() when this process began: its share of the wall time


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
    if kind == "final":
        provenance = read_record(src / PROVENANCE) or {}
        eras = data_eras(provenance, step)
        data = ((provenance.get("data") or [{}])[-1] or {}).get("data") or {}
    else:
        record = read_record(src / DATA_RECORD) or {}
        eras, data = data_eras(record, step), record.get("data") or {}
    config = read_record(src / "config.json") or {}
    history = [h for h in state.get("log_history", []) if isinstance(h, dict)]
    samples = facts.samples_at(step)
    sections = [
        _header(facts, config),
        _title(src, kind, step, state.get("max_steps")),
        f"![training curves]({CURVES_FILE})" if missing is None else f"({missing})",
        _model(src, facts, config),
        _tokenizer(src),
        _data(data, eras, samples),
        _training(facts, state, history, step, samples, kind),
        _results(history),
        _reproduce(facts, eras),
        _use(src),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _header(facts: RunFacts, config: dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    model_type = str(config.get("model_type") or "masked-lm")
    data = ModelCardData(language=facts.language, license=facts.license, library_name="transformers",
                         pipeline_tag="fill-mask", tags=["fill-mask", "masked-lm", model_type, "mlm-pretrain"])
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


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows])


def parameter_count(model_dir: Path) -> int | None:
    """Parameters stored in the safetensors files (read from their headers: no weights loaded; a tied
    weight is stored, and counted, once)."""
    index = read_record(model_dir / "model.safetensors.index.json")
    files = sorted(set((index or {}).get("weight_map", {}).values())) if index else ["model.safetensors"]
    total = 0
    for name in files:
        try:
            with open(model_dir / name, "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        except (OSError, ValueError):
            return None
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def _model(src: Path, facts: RunFacts, config: dict[str, Any]) -> str:
    params = parameter_count(src)
    rows = [("architecture", f"{facts.architecture}: {config.get('model_type', '?')} "
                             f"({', '.join(config.get('architectures') or ['?'])})"),
            ("parameters", f"{params:,} ({params / 1e6:.1f} M)" if params is not None else "not known (no safetensors)"),
            ("layers, hidden size, heads", f"{config.get('num_hidden_layers', '?')}, {config.get('hidden_size', '?')}, "
                                           f"{config.get('num_attention_heads', '?')}"),
            ("max positions", config.get("max_position_embeddings", "?"))]
    return "## Model\n\n" + _table(rows)


def _tokenizer(src: Path) -> str:
    manifest = next(iter(sorted((src / "manifests").rglob("train.json"))), None)
    tok = ((read_record(manifest) if manifest else None) or {}).get("tokenizer") or {}
    if not tok:
        return "## Tokenizer\n\nnot recorded (no manifests/ beside the model)"
    rows = [("type", f"{tok.get('type')} ({tok.get('class', '?')}, encoded with {tok.get('encoder', '?')})"),
            ("vocabulary", f"{tok.get('vocab_size', 0):,}"),
            ("loaded from", f"`{tok.get('name_or_path')}` (digest {tok.get('digest')}); a copy is beside the model"),
            ("trained", _tokenizer_origin(str(tok.get("name_or_path", ""))))]
    return "## Tokenizer\n\n" + _table(rows)


def _tokenizer_origin(name_or_path: str) -> str:
    """What mlm-train-tokenizer's training.json beside the tokenizer says it was trained on."""
    path = Path(name_or_path)
    d = read_record((path if path.is_dir() else path.parent) / TRAINING_FILE)
    if d is None:
        return f"not recorded (no {TRAINING_FILE} beside it: not made by mlm-train-tokenizer, or moved)"
    try:
        corpora = ", ".join(f"{n} ({c['weight']:.0%})" for n, c in d["corpora"].items())
        return (f"by mlm-train-tokenizer ({d['type']}) on a seeded sample of {d['sample']['text_bytes']:,} bytes "
                f"(seed {d['seed']}, digest {d['sample']['digest']}) of {corpora}")
    except (KeyError, TypeError, AttributeError, ValueError):
        return f"by mlm-train-tokenizer ({TRAINING_FILE} unreadable)"


def _data(data: dict[str, Any], eras: list[dict[str, Any]], samples: int) -> str:
    """Per corpus: its dirs, shards, tokens, weight, passes and tokens seen (estimated from the mean block)."""
    splits = data.get("splits") or {}
    if not splits:
        return "## Data\n\nnot recorded"
    mixture = (data.get("order") or {}).get("mixture") or {}
    head = ("| corpus | split | text dirs | shards | tokens | weight | passes | tokens seen (about) | fingerprint |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---|")
    rows = []
    for name, s in splits.items():
        corpus, _, split = name.rpartition("/")
        corpus = corpus or "(one corpus)"
        blocks, tokens = int(s.get("blocks") or 0), int(s.get("tokens") or 0)
        if split == "train":
            w = float(mixture.get(corpus, 1.0 if not mixture else 0.0))
            seen = samples * w
            passes, tokens_seen = (f"{seen / blocks:,.2f}", f"{seen * tokens / blocks:,.0f}") if blocks else ("0", "0")
            weight = f"{w:.1%}"
        else:
            passes = tokens_seen = weight = "held out"
        rows.append(f"| {corpus} | {split} | `{s.get('input_dir')}` | {s.get('shards', '?')} | {tokens:,} | {weight} | "
                    f"{passes} | {tokens_seen} | `{s.get('fingerprint')}` |")
    changes = data_changes(eras)
    lines = [f"Block size {data.get('max_seq_length')} tokens ({data.get('datasets_type')}); a fingerprint is the "
             "cache manifest's content hash, less where the text lives. Tokens seen: samples x weight x the "
             "corpus's mean tokens per block.", head, *rows,
             "Data changes during the run (--allow_data_change): " + "; ".join(changes) if changes
             else "The data did not change during the run."]
    return "## Data\n\n" + "\n".join(lines[:1]) + "\n\n" + "\n".join(lines[1:-1]) + "\n\n" + lines[-1]


def _mean(history: list[dict[str, Any]], key: str) -> float | None:
    values = [h[key] for h in history if isinstance(h.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def _training(facts: RunFacts, state: dict[str, Any], history: list[dict[str, Any]], step: int, samples: int,
              kind: str) -> str:
    target = state.get("max_steps")
    runtime = sum(h["train_runtime"] for h in history if isinstance(h.get("train_runtime"), (int, float)))
    if kind != "final":
        runtime += time.time() - facts.started
    tokens_seen = next((h["tokens_seen"] for h in reversed(history) if "tokens_seen" in h), None)
    speed, per_sample, mfu = (_mean(history, k) for k in ("tokens_per_second", "samples_per_second", "mfu"))
    not_recorded = "not recorded"
    rows = [("optimizer steps", f"{step:,}" + (f" of {target:,}" if isinstance(target, int) and target > 0 else "")),
            ("global batch", f"{facts.global_batch:,} samples ({facts.settings['batch']})"),
            *((k, facts.settings[k]) for k in ("learning rate", "optimizer", "precision", "seed")),
            ("hardware", facts.hardware),
            ("wall time", f"{_duration(runtime)} (the Trainer's train_runtime of each process that ended"
                          + ("" if kind == "final" else ", and this one's until this save")
                          + "; a process killed before its end is not counted)"),
            ("samples seen", f"{samples:,}"),
            ("tokens seen", f"{tokens_seen:,.0f}" if isinstance(tokens_seen, (int, float)) else not_recorded),
            ("mean throughput", f"{speed:,.0f} tokens/s" + (f", {per_sample:,.1f} samples/s" if per_sample else "")
             if speed is not None else not_recorded),
            ("mean MFU", f"{mfu:.1f}%" if mfu is not None else not_recorded)]
    return "## Training\n\n" + _table(rows)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _results(history: list[dict[str, Any]]) -> str:
    """Final and best held-out loss (perplexity) of the mean over corpora and of each corpus."""
    keys = sorted({k for h in history for k in h if k.startswith("eval_") and k.endswith("_loss")},
                  key=lambda k: (k != "eval_loss", k))
    if not keys:
        return "## Results\n\nnot evaluated (no held-out split, or --eval_strategy no)"
    rows = []
    for key in keys:
        points = [(h.get("step"), h[key]) for h in history if isinstance(h.get(key), (int, float))]
        (last_step, last), (best_step, best) = points[-1], min(points, key=lambda p: p[1])
        name = "all corpora (weighted by blocks)" if key == "eval_loss" else key[len("eval_"):-len("_loss")]
        rows.append(f"| {name} | {last:.4f} ({_ppl(last)}) at step {last_step} | {best:.4f} ({_ppl(best)}) at step "
                    f"{best_step} |")
    return ("## Results\n\nHeld-out masked-LM loss (perplexity).\n\n| held-out | final | best |\n|---|---|---|\n"
            + "\n".join(rows))


def _ppl(loss: float) -> str:
    return f"perplexity {math.exp(min(loss, 50.0)):,.2f}"


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
             license_id: str | None, global_batch: int, samples_at: Callable[[int], int]) -> RunFacts:
    return RunFacts(command, architecture, trainer_settings(targs), global_batch, hardware(targs), language,
                    license_id, samples_at, time.time())


def _guarded(write: Callable[..., None], *args: Any) -> None:
    """A card that cannot be written (a full disk, a record a future version words otherwise) never stops a
    run days in: its checkpoint is what matters. One warning line instead; the tests assert there is none."""
    try:
        write(*args)
    except Exception as e:  # noqa: BLE001
        print(f"warning: the model card was not written ({type(e).__name__}: {e}); training goes on", file=sys.stderr)
