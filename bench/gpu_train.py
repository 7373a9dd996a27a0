#!/usr/bin/env python
"""Measure roberta-base MLM training throughput (tokens/s, MFU) with our settings vs Trainer defaults.

Made for one call on a GPU machine (< 5 minutes, nothing downloaded): every
variant runs in its own subprocess, so process-wide switches one variant
flips (TF32, compile caches, the CUDA allocator) cannot leak into the next.

* data: synthetic 512-token blocks ``<s> random ids </s>`` held in memory,
  no padding, no I/O: the model and the Trainer loop are what is measured;
* tokenizer: a WordLevel vocabulary of ``--vocab_size`` made-up tokens with
  RoBERTa's special ids (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3,
  ``<mask>`` last), built in memory, so the collators mask and replace
  exactly as with a real tokenizer of that size;
* model: ``train/configs/<--architecture>.json`` fitted to that tokenizer;
* variants (``--variants``):

  - ``defaults``: ``TrainingArguments(output_dir, per_device_train_batch_size,
    bf16=True)`` + ``DataCollatorForLanguageModeling(tokenizer)``, the model
    as transformers builds it;
  - ``ours``: what ``train/run.py`` does (``train.model.build_model``, which
    sets ``accepts_loss_kwargs=False``, and ``MlmCollator`` with
    ``pad_to_multiple_of=8`` and an attention mask) plus the throughput
    flags of ``our_throughput_args``;
  - ``ours_compile``: ``ours`` + ``torch_compile=True``.

  Both get the same harness flags (``max_steps``, no checkpoints, no
  progress bar, no reporting, same seed), which change no throughput setting.

Step time is steady state: a ``TrainerCallback`` synchronises the GPU at the
end of step ``--warmup_steps`` and of the last step and divides. tokens/s
counts every position of the batch (all real here). MFU = 6 x params x
tokens/s / peak, params = ``model.num_parameters()`` (tied embeddings once;
attention-score FLOPs not counted, so MFU is a slight underestimate).

``--smoke`` runs the same code on CPU in well under a minute with
roberta-tiny, short blocks and a few steps: it proves the script, not speed.
Prints one markdown table to stdout and writes it to ``<out>.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after the tokenizer exists

import argparse
import dataclasses
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout too (a GPU node), not only where the project is installed

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM bf16 dense peak (PCIe: ~756); H200 is the same chip: 989
VARIANTS = ("defaults", "ours", "ours_compile")
_T0 = time.perf_counter()
RESULT_TAG = "RESULT "

# Full run (GPU) vs --smoke (CPU): the shape of the work.
FULL = {"architecture": "roberta-base", "vocab_size": 50265, "seq_len": 512, "batch_size": 32, "steps": 60,
        "warmup_steps": 15, "workers": 4, "variant_timeout": 170}
SMOKE = {"architecture": "roberta-tiny", "vocab_size": 1000, "seq_len": 128, "batch_size": 8, "steps": 12,
         "warmup_steps": 4, "workers": 2, "variant_timeout": 60}


def log(msg: str) -> None:
    """Progress to stderr, so stdout carries only the table (and, in a child, the result line)."""
    print(f"[gpu_train] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data, tokenizer, model


class SyntheticBlocks(Dataset):
    """n blocks of ``<s> ids </s>`` of exactly seq_len ids, drawn once from a fixed seed.

    Random ids instead of text: throughput does not depend on which ids they
    are, and in-memory tensors take disk and tokenization out of the measurement.
    """

    def __init__(self, n: int, seq_len: int, vocab_size: int, first_id: int, bos: int, eos: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.data = torch.randint(first_id, vocab_size - 1, (n, seq_len), generator=g, dtype=torch.long)
        self.data[:, 0], self.data[:, -1] = bos, eos

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i].clone()  # a fresh tensor, as our memmap dataset returns


def synthetic_tokenizer(vocab_size: int) -> Any:
    """A fast tokenizer with RoBERTa's special ids and ``vocab_size`` entries, built in memory (nothing saved).

    The collators only need its special ids, mask id and ``len()`` (the range
    random replacement draws from), which this gives exactly.
    """
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({f"w{i}": i for i in range(4, vocab_size - 1)})
    vocab["<mask>"] = vocab_size - 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>")


def special_ids_of(tok: Any) -> Any:
    """The special ids ``train.model.build_model`` reads, as ``common.tokenizer`` records them."""
    from common.manifest import SpecialIds

    return SpecialIds(tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id, tok.mask_token_id)


def build(variant: str, architecture: str, tok: Any, seq_len: int, seed: int) -> tuple[Any, Any]:
    """(model, collator) for a variant, both from the same config and init seed."""
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

    from train.collator import MlmCollator
    from train.model import build_model, check_positions, fit_to_tokenizer, load_config

    ids = special_ids_of(tok)
    torch.manual_seed(seed)
    if variant == "defaults":
        config = load_config(architecture, None, None)
        fit_to_tokenizer(config, len(tok), ids, fresh=True)
        check_positions(config, seq_len)
        return AutoModelForMaskedLM.from_config(config), DataCollatorForLanguageModeling(tok)
    model = build_model(architecture, None, None, len(tok), ids, seq_len)  # exactly what train/run.py calls
    return model, MlmCollator(tok, [ids.bos, ids.eos, ids.pad], ids.pad, 0.15)


# --------------------------------------------------------------------------- training arguments


def checked(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fail loudly on a TrainingArguments field this transformers does not have, instead of a guess."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise SystemExit(f"TrainingArguments has no {unknown} in this transformers version")
    return kwargs


def harness_args(output_dir: str, steps: int, seed: int) -> dict[str, Any]:
    """Identical for every variant: run length and silence, no throughput setting.

    Without a GPU, ``use_cpu`` is what lets ``bf16=True`` through (CPU
    autocast); TrainingArguments refuses bf16 on a CPU-only box otherwise.
    """
    args = {"max_steps": steps, "save_strategy": "no", "report_to": "none", "disable_tqdm": True, "seed": seed,
            "output_dir": output_dir}
    if not torch.cuda.is_available():
        args["use_cpu"] = True
    return args


def our_throughput_args(cuda: bool, workers: int, compile_: bool) -> dict[str, Any]:
    """The flags we recommend on a GPU node, each for a reason:

    * ``dataloader_num_workers``: MlmCollator costs ~1 ms per 32x512 batch on
      one CPU core (bench/dataloader.py); in the main process that time sits
      between two GPU steps, in workers it overlaps them;
    * ``dataloader_persistent_workers``: no re-fork of the workers at each epoch;
    * ``dataloader_prefetch_factor`` 4: a few batches queued against a slow step;
    * ``dataloader_pin_memory`` (already the default): page-locked batches
      make the host-to-device copy asynchronous;
    * ``tf32``: fp32 matmuls outside autocast (few under bf16) use tensor
      cores; only where the GPU has them (Ampere+), else TrainingArguments raises;
    * ``torch_compile`` (variant ``ours_compile`` only): fuses layer norms,
      GELU, dropout and the optimizer's elementwise work.
    """
    args: dict[str, Any] = {"bf16": True, "dataloader_pin_memory": cuda}
    if cuda and torch.cuda.get_device_capability(0)[0] >= 8:
        args["tf32"] = True
    if workers > 0:
        args.update(dataloader_num_workers=workers, dataloader_persistent_workers=True, dataloader_prefetch_factor=4)
    if compile_:
        args["torch_compile"] = True
    return args


# --------------------------------------------------------------------------- timing


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_timer(warmup_steps: int) -> Any:
    """A TrainerCallback timing steps warmup_steps+1 .. max_steps: compile, cudnn autotune and worker start are out."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.t_begin = self.t_first = self.t_warm = self.t_end = None

        def on_train_begin(self, args, state, control, **kwargs):
            sync()
            self.t_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (1, warmup_steps, state.max_steps):
                sync()
                now = time.perf_counter()
                if state.global_step == 1:
                    self.t_first = now
                if state.global_step == warmup_steps:
                    self.t_warm = now
                if state.global_step == state.max_steps:
                    self.t_end = now

    return StepTimer()


def run_variant(variant: str, a: argparse.Namespace) -> dict[str, Any]:
    """Train one variant in this process and return its numbers as a dict (printed as one JSON line)."""
    from transformers import Trainer, TrainingArguments

    cuda = torch.cuda.is_available()
    tok = synthetic_tokenizer(a.vocab_size)
    data = SyntheticBlocks(a.steps * a.batch_size, a.seq_len, a.vocab_size, 4, tok.bos_token_id, tok.eos_token_id,
                           a.seed)
    model, collator = build(variant, a.architecture, tok, a.seq_len, a.seed)
    params = model.num_parameters()
    timer = make_timer(a.warmup_steps)
    with tempfile.TemporaryDirectory() as out:
        kwargs = harness_args(out, a.steps, a.seed)
        if variant == "defaults":
            kwargs.update(per_device_train_batch_size=a.batch_size, bf16=True)
        else:
            kwargs.update(per_device_train_batch_size=a.batch_size,
                          **our_throughput_args(cuda, a.workers, variant == "ours_compile"))
        targs = TrainingArguments(**checked(kwargs))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(model=model, args=targs, data_collator=collator, train_dataset=data,
                          processing_class=tok, callbacks=[timer])
        result = trainer.train()
    steady = a.steps - a.warmup_steps
    step_s = (timer.t_end - timer.t_warm) / steady
    tokens_per_s = a.batch_size * a.seq_len / step_s
    settings = {k: v for k, v in kwargs.items() if k not in harness_args("", 0, 0)}
    return {
        "variant": variant,
        "params": params,
        "step_ms": step_s * 1e3,
        "tokens_per_s": tokens_per_s,
        "samples_per_s": a.batch_size / step_s,
        "mfu": 6 * params * tokens_per_s / (a.peak_tflops * 1e12),
        "first_step_s": timer.t_first - timer.t_begin,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "train_loss": result.training_loss,
        "attn": getattr(model.config, "_attn_implementation", "?"),
        "collator": type(collator).__name__,
        "accepts_loss_kwargs": getattr(model, "accepts_loss_kwargs", "unset"),
        "settings": settings,
    }


# --------------------------------------------------------------------------- parent: run all, report


def child_argv(a: argparse.Namespace, variant: str) -> list[str]:
    """The command line that runs one variant in a fresh process."""
    flags = ["--architecture", a.architecture, "--vocab_size", a.vocab_size, "--seq_len", a.seq_len,
             "--batch_size", a.batch_size, "--steps", a.steps, "--warmup_steps", a.warmup_steps,
             "--workers", a.workers, "--peak_tflops", a.peak_tflops, "--seed", a.seed, "--one", variant]
    return [sys.executable, str(Path(__file__).resolve()), *map(str, flags)]


def run_child(a: argparse.Namespace, variant: str) -> dict[str, Any]:
    """One variant in a subprocess; a failure or timeout becomes a row saying so, not a lost run."""
    t = time.perf_counter()
    timeout = min(a.variant_timeout, a.budget_s - (t - _T0))
    if timeout < 20:
        return {"variant": variant, "error": f"skipped: --budget_s {a.budget_s} spent"}
    try:
        p = subprocess.run(child_argv(a, variant), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "error": f"timed out after {timeout:.0f}s"}
    wall = time.perf_counter() - t
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return {**json.loads(line[len(RESULT_TAG):]), "wall_s": wall}
    tail = (p.stderr or p.stdout).strip().splitlines()[-15:]
    log(f"{variant} failed (rc {p.returncode}):\n" + "\n".join(tail))
    return {"variant": variant, "error": f"rc {p.returncode}: {tail[-1] if tail else ''}"[:200]}


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"CPU only: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def table(results: list[dict[str, Any]], a: argparse.Namespace, cmd: str) -> str:
    """Markdown table of the variants, ratios against ``defaults``, and the lines that say what ran where."""
    base = next((r for r in results if r["variant"] == "defaults" and "error" not in r), None)
    head = ["variant", "step ms", "tokens/s", "samples/s", "MFU", "vs defaults", "1st step s", "peak GiB",
            "loss", "wall s"]
    lines = [f"device: {device_name()}; torch {torch.__version__}; peak assumed {a.peak_tflops:g} TFLOP/s "
             f"(flag --peak_tflops; H100 SXM bf16 dense = 989)", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} |" + " |" * (len(head) - 2))
            continue
        vs = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "—"
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "—"
        lines.append(f"| {r['variant']} | {r['step_ms']:.1f} | {r['tokens_per_s']:,.0f} | {r['samples_per_s']:,.1f} "
                     f"| {r['mfu']:.1%} | {vs} | {r['first_step_s']:.1f} | {mem} | {r['train_loss']:.2f} "
                     f"| {r['wall_s']:.0f} |")
    ok = [r for r in results if "error" not in r]
    params = ok[0]["params"] if ok else 0
    notes = [
        f"command: `{cmd}`",
        f"model: {a.architecture} ({params / 1e6:.2f}M params, vocab {a.vocab_size}), "
        f"attention {ok[0]['attn'] if ok else '?'}; batch {a.batch_size} x {a.seq_len} synthetic tokens, no padding; "
        f"{a.steps} steps, timed {a.steps - a.warmup_steps} after {a.warmup_steps} warm-up steps",
        "MFU = 6 x params x tokens/s / peak (attention-score FLOPs not counted)",
    ]
    notes += [f"{r['variant']}: {r['collator']}, accepts_loss_kwargs={r['accepts_loss_kwargs']}, "
              f"TrainingArguments {json.dumps(r['settings'])}" for r in ok]
    if a.smoke:
        notes.append("--smoke: CPU, tiny model, a few steps; proves the script runs end to end, not a speed number")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run (< 1 min) proving the script end to end")
    ap.add_argument("--steps", type=int, help=f"optimizer steps per variant (default {FULL['steps']})")
    ap.add_argument("--warmup_steps", type=int, help=f"steps before the clock (default {FULL['warmup_steps']})")
    ap.add_argument("--batch_size", type=int, help=f"per-device batch (default {FULL['batch_size']})")
    ap.add_argument("--seq_len", type=int, help=f"tokens per block (default {FULL['seq_len']})")
    ap.add_argument("--vocab_size", type=int, help=f"synthetic vocabulary (default {FULL['vocab_size']})")
    ap.add_argument("--architecture", help=f"train/configs/<name>.json (default {FULL['architecture']})")
    ap.add_argument("--workers", type=int, help=f"dataloader_num_workers for ours (default {FULL['workers']})")
    ap.add_argument("--peak_tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="peak bf16 TFLOP/s for MFU")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS,
                    help=f"default: {' '.join(VARIANTS)} on GPU, 'defaults ours' with --smoke")
    ap.add_argument("--variant_timeout", type=int, help="seconds per variant subprocess")
    ap.add_argument("--budget_s", type=float, default=280,
                    help="wall seconds for all variants: a variant is cut short or skipped rather than overrun")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "gpu_train")
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    a = ap.parse_args(argv)
    shape = SMOKE if a.smoke else FULL
    for k, v in shape.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.variants is None:
        a.variants = ["defaults", "ours"] if a.smoke else list(VARIANTS)
    if not 0 < a.warmup_steps < a.steps:
        ap.error("need 0 < --warmup_steps < --steps")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.one:
        print(RESULT_TAG + json.dumps(run_variant(a.one, a)), flush=True)
        return 0
    if not torch.cuda.is_available() and not a.smoke:
        log("no CUDA GPU visible: numbers will be CPU numbers (use --smoke for the quick CPU check)")
    log(f"device: {device_name()}")
    results = []
    for v in a.variants:
        log(f"variant {v} ...")
        results.append(run_child(a, v))
        if "error" not in results[-1]:
            log(f"variant {v}: {results[-1]['tokens_per_s']:,.0f} tokens/s, {results[-1]['wall_s']:.0f}s wall")
    cmd = "python bench/gpu_train.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = table(results, a, cmd.strip())
    print(text, end="")
    md = a.out.with_suffix(".md")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    log(f"wrote {md}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
