"""The model card's sections, each a table read from what the run recorded (train/model_card.py writes them).

Model (config.json, the safetensors headers), tokenizer (the manifest's record
of it, and mlm-train-tokenizer's training.json beside it), data (each split's
record in data.json or provenance.json), training (the Trainer's settings and
trainer_state.json's log history: speed where train/throughput.py logged it,
"not recorded" where not), results (every held-out loss logged).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.run_dir import data_changes, read_record
from common.tokenizer import TRAINING_FILE


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
    max_eval_samples: int | None = None  # held-out losses are of each split's first N blocks only


def table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("", "")) -> str:
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


def model_section(src: Path, facts: RunFacts, config: dict[str, Any]) -> str:
    params = parameter_count(src)
    rows = [("architecture", f"{facts.architecture}: {config.get('model_type', '?')} "
                             f"({', '.join(config.get('architectures') or ['?'])})"),
            ("parameters", f"{params:,} ({params / 1e6:.1f} M)" if params is not None else "not known (no safetensors)"),
            ("layers, hidden size, heads", f"{config.get('num_hidden_layers', '?')}, {config.get('hidden_size', '?')}, "
                                           f"{config.get('num_attention_heads', '?')}"),
            ("max positions", config.get("max_position_embeddings", "?"))]
    return "## Model\n\n" + table(rows)


def tokenizer_section(src: Path) -> str:
    manifest = next(iter(sorted((src / "manifests").rglob("train.json"))), None)
    tok = ((read_record(manifest) if manifest else None) or {}).get("tokenizer") or {}
    if not tok:
        return "## Tokenizer\n\nnot recorded (no manifests/ beside the model)"
    rows = [("type", f"{tok.get('type')} ({tok.get('class', '?')}, encoded with {tok.get('encoder', '?')})"),
            ("vocabulary", f"{tok.get('vocab_size', 0):,}"),
            ("loaded from", f"`{tok.get('name_or_path')}` (digest {tok.get('digest')}); a copy is beside the model"),
            ("trained", tokenizer_origin(str(tok.get("name_or_path", ""))))]
    return "## Tokenizer\n\n" + table(rows)


def tokenizer_origin(name_or_path: str) -> str:
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


def data_section(data: dict[str, Any], eras: list[dict[str, Any]], samples: int,
                 counted: dict[str, int] | None = None) -> str:
    """Per corpus: its dirs, shards, tokens, weight, passes and tokens seen: as counted during the run
    (``counted``: real tokens per corpus, train/throughput.py), else estimated from the mean block."""
    splits = data.get("splits") or {}
    if not splits:
        return "## Data\n\nnot recorded"
    mixture = (data.get("order") or {}).get("mixture") or {}
    exact = counted is not None and all(
        (n.rpartition("/")[0] or "train") in counted for n in splits if n.rpartition("/")[2] == "train")
    head = (f"| corpus | split | text dirs | shards | tokens | weight | passes | tokens seen{'' if exact else ' (about)'} "
            "| fingerprint |\n|---|---|---|---:|---:|---:|---:|---:|---|")
    rows = []
    for name, s in splits.items():
        corpus, _, split = name.rpartition("/")
        key, corpus = corpus or "train", corpus or "(one corpus)"
        blocks, tokens = int(s.get("blocks") or 0), int(s.get("tokens") or 0)
        if split == "train":
            w = float(mixture.get(corpus, 1.0 if not mixture else 0.0))
            seen = samples * w
            passes, tokens_seen = (f"{seen / blocks:,.2f}", f"{seen * tokens / blocks:,.0f}") if blocks else ("0", "0")
            if exact and counted is not None:
                passes = f"{counted[key] / tokens:,.2f}" if tokens else "0"
                tokens_seen = f"{counted[key]:,}"
            weight = f"{w:.1%}"
        else:
            passes = tokens_seen = weight = "held out"
        rows.append(f"| {corpus} | {split} | `{s.get('input_dir')}` | {s.get('shards', '?')} | {tokens:,} | {weight} | "
                    f"{passes} | {tokens_seen} | `{s.get('fingerprint')}` |")
    changes = data_changes(eras)
    lines = [f"Block size {data.get('max_seq_length')} tokens ({data.get('datasets_type')}); a fingerprint is the "
             "cache manifest's content hash, less where the text lives. Tokens seen: "
             + ("the real tokens trained from each corpus, counted during the run; passes: those over its tokens."
                if exact else "samples x weight x the corpus's mean tokens per block (the run's checkpoints kept "
                "no count per corpus)."), head, *rows,
             "Data changes during the run (--allow_data_change): " + "; ".join(changes) if changes
             else "The data did not change during the run."]
    return "## Data\n\n" + "\n".join(lines[:1]) + "\n\n" + "\n".join(lines[1:-1]) + "\n\n" + lines[-1]


def rates(history: list[dict[str, Any]]) -> dict[str, float]:
    """``tokens_per_second``, ``samples_per_second`` and ``mfu`` over the run: each logged interval's value
    weighted by its length in time (its tokens over its rate), so a slow first interval counts as long as it lasted."""
    keys = ("tokens_per_second", "samples_per_second", "mfu")
    seen, weight, sums = 0.0, 0.0, dict.fromkeys(keys, 0.0)
    for h in history:
        rate, total = h.get("tokens_per_second"), h.get("tokens_seen")
        if not (isinstance(rate, (int, float)) and rate > 0 and isinstance(total, (int, float))):
            continue
        seconds = max(total - seen, 0) / rate
        seen = total
        weight += seconds
        for k in keys:
            sums[k] += float(h.get(k) or 0.0) * seconds
    if not weight:
        return {}
    return {k: sums[k] / weight for k in keys if any(k in h for h in history)}


def training_section(facts: RunFacts, state: dict[str, Any], history: list[dict[str, Any]], step: int, samples: int,
              kind: str) -> str:
    target = state.get("max_steps")
    runtime = sum(h["train_runtime"] for h in history if isinstance(h.get("train_runtime"), (int, float)))
    if kind != "final":
        runtime += time.time() - facts.started
    tokens_seen = next((h["tokens_seen"] for h in reversed(history) if "tokens_seen" in h), None)
    speed, per_sample, mfu = (rates(history).get(k) for k in ("tokens_per_second", "samples_per_second", "mfu"))
    not_recorded = "not recorded"
    rows = [("optimizer steps", f"{step:,}" + (f" of {target:,}" if isinstance(target, int) and target > 0 else "")),
            ("global batch", f"{facts.global_batch:,} samples ({facts.settings['batch']})"),
            *((k, facts.settings[k]) for k in ("learning rate", "optimizer", "precision", "seed")),
            ("hardware", facts.hardware),
            ("wall time", f"{duration(runtime)} (the Trainer's train_runtime of each process that ended"
                          + ("" if kind == "final" else ", and this one's until this save")
                          + "; a process killed before its end is not counted)"),
            ("samples seen", f"{samples:,}"),
            ("tokens seen", f"{tokens_seen:,.0f}" if isinstance(tokens_seen, (int, float)) else not_recorded),
            ("mean throughput", f"{speed:,.0f} tokens/s" + (f", {per_sample:,.1f} samples/s" if per_sample else "")
             if speed is not None else not_recorded),
            ("mean MFU", f"{mfu:.1f}%" if mfu is not None else not_recorded)]
    return "## Training\n\n" + table(rows)


def duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def results_section(history: list[dict[str, Any]], max_eval_samples: int | None = None) -> str:
    """Final and best held-out loss (perplexity) of the mean over corpora and of each corpus; with
    --max_eval_samples, said to be of the first blocks only, which the data table's held-out rows are not."""
    keys = sorted({k for h in history for k in h if k.startswith("eval_") and k.endswith("_loss")},
                  key=lambda k: (k != "eval_loss", k))
    if not keys:
        return "## Results\n\nnot evaluated (no held-out split, or --eval_strategy no)"
    rows = []
    for key in keys:
        points = [(h.get("step"), h[key]) for h in history if isinstance(h.get(key), (int, float))]
        (last_step, last), (best_step, best) = points[-1], min(points, key=lambda p: p[1])
        name = key[len("eval_"):-len("_loss")] if key != "eval_loss" else \
            "validation" if keys == ["eval_loss"] else "all corpora (weighted by blocks)"
        rows.append(f"| {name} | {last:.4f} ({ppl(last)}) at step {last_step} | {best:.4f} ({ppl(best)}) at step "
                    f"{best_step} |")
    subset = (f", on the first {max_eval_samples:,} blocks of each held-out split only (--max_eval_samples "
              f"{max_eval_samples})" if max_eval_samples is not None else "")
    return (f"## Results\n\nHeld-out masked-LM loss (perplexity){subset}.\n\n| held-out | final | best |\n"
            "|---|---|---|\n" + "\n".join(rows))


def ppl(loss: float) -> str:
    return f"perplexity {math.exp(min(loss, 50.0)):,.2f}"
