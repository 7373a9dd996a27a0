#!/usr/bin/env python
"""Measure roberta-base MLM training throughput (real tokens/s, MFU) of mlm-train vs Trainer defaults.

Made for one call on a GPU machine (< 5 minutes, nothing downloaded): every
variant runs in its own subprocess, so process-wide switches one variant
flips (TF32, compile caches, the CUDA allocator) cannot leak into the next.

* data (``--data``): a cache our own preprocess stage builds from a corpus
  of made-up words (bench/train_cpu.py), so the blocks have the lengths
  FULL-SENTENCES packing really gives:

  - ``real``: line lengths long-tailed like text: blocks of every length up
    to ``--seq_len`` (mean about 0.9 x seq_len at 512), so padding matters;
  - ``full``: lines far longer than a block: every block full, no padding
    (the old synthetic setting);
* tokenizer: a WordLevel vocabulary of ``--vocab_size`` ids with RoBERTa's
  special ids, made in memory and saved beside the cache;
* variants (``--variants``), all on the same cache, seed and batch size:

  - ``defaults``: ``Trainer`` + ``RobertaForMaskedLM`` as transformers builds
    it + ``DataCollatorForLanguageModeling``, ``TrainingArguments`` with only
    ``bf16=True`` (random batches, the dense prediction head);
  - ``ours``: ``mlm-train`` itself (``train.run.train`` from its parsed
    command line, ``--bf16`` on a GPU): the prediction head at masked
    positions only, batches grouped by length, masks drawn at use, and the
    GPU defaults it sets (TF32, fused AdamW, 2 persistent DataLoader workers);
  - ``ours_compile``: ``ours`` + ``--torch_compile true``.

Step time is steady state: a ``TrainerCallback`` synchronises the GPU at the
end of step ``--warmup_steps`` and of the last step and divides. Real
tokens/s counts only non-pad ids: batch x mean example length / step time
(the mean over the epoch the sampler deals); positions/s counts what the
model computes, pad included, and the pad share is that of the variant's own
batches. MFU = 6 x params x real tokens/s / peak, params =
``model.num_parameters()`` (attention-score FLOPs not counted, so MFU is a
slight underestimate).

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
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout too (a GPU node), not only where the project is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM bf16 dense peak (PCIe: ~756); H200 is the same chip: 989
VARIANTS = ("defaults", "ours", "ours_compile")
_T0 = time.perf_counter()
RESULT_TAG = "RESULT "

# Full run (GPU) vs --smoke (CPU): the shape of the work.
FULL = {"architecture": "roberta-base", "vocab_size": 50265, "seq_len": 512, "batch_size": 32, "steps": 60,
        "warmup_steps": 15, "lines": 60_000, "variant_timeout": 150}
SMOKE = {"architecture": "roberta-tiny", "vocab_size": 1000, "seq_len": 128, "batch_size": 8, "steps": 12,
         "warmup_steps": 4, "lines": 2_000, "variant_timeout": 60}


def log(msg: str) -> None:
    """Progress to stderr, so stdout carries only the table (and, in a child, the result line)."""
    print(f"[gpu_train] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data, tokenizer, model


def build_data(a: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(tokenizer dir, cache dir): the bench corpus of ``--data`` preprocessed by our own preprocess stage."""
    from train_cpu import make_corpus, make_tokenizer, preprocess

    tok = make_tokenizer(a.vocab_size, work / "tok")
    lines, mu = (a.lines, 3.4) if a.data == "real" else (max(200, a.lines // 40), np.log(20 * a.seq_len))
    text = make_corpus(work / "text", lines, a.vocab_size, a.seed, mu=mu)
    preprocess(tok, text, work / "cache", a.seq_len)
    return tok, work / "cache"


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


def run_defaults(a: argparse.Namespace, out: str, timer: Any) -> tuple[Any, Any, np.ndarray]:
    """The plain transformers setup: (trainer, train result, the order its sampler deals)."""
    from train_cpu import plain_trainer

    training = checked({**harness_args(out, a.steps, a.seed), "bf16": True, "per_device_train_batch_size": a.batch_size})
    trainer = plain_trainer(a.architecture, a.tok, a.cache, a.seq_len, a.seed, training, [timer])
    result = trainer.train()
    return trainer, result, np.random.default_rng(a.seed).permutation(len(trainer.train_dataset))


def run_ours(a: argparse.Namespace, out: str, timer: Any, compile_: bool) -> tuple[Any, Any, np.ndarray]:
    """mlm-train as its command line sets it up: (trainer, train result, the order its sampler deals)."""
    from train.config import announce, parse
    from train.run import train
    from train.sampling import LengthGroupedSampler

    flags = ["--tokenizer_name_or_path", a.tok, "--datasets_cache_dir", a.cache, "--max_seq_length", str(a.seq_len),
             "--architecture", a.architecture, "--output_dir", out, "--max_steps", str(a.steps),
             "--per_device_train_batch_size", str(a.batch_size), "--save_strategy", "no", "--report_to", "none",
             "--disable_tqdm", "true", "--seed", str(a.seed)]
    if torch.cuda.is_available():
        flags += ["--bf16"]
    if compile_:
        flags += ["--torch_compile", "true"]
    parsed = parse(flags, "mlm-train")
    announce(parsed)
    metrics, trainer = train(parsed.cache, parsed.model, parsed.mlm, parsed.training, callbacks=[timer])
    sampler = trainer._get_train_sampler()
    order = sampler.order() if isinstance(sampler, LengthGroupedSampler) else np.arange(len(trainer.train_dataset))
    return trainer, types.SimpleNamespace(training_loss=metrics.get("train_loss", float("nan"))), order


def run_variant(variant: str, a: argparse.Namespace) -> dict[str, Any]:
    """Train one variant in this process and return its numbers as a dict (printed as one JSON line)."""
    from train.sampling import pad_share

    cuda = torch.cuda.is_available()
    timer = make_timer(a.warmup_steps)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        if variant == "defaults":
            trainer, result, order = run_defaults(a, out, timer)
        else:
            trainer, result, order = run_ours(a, out, timer, variant == "ours_compile")
    lengths = trainer.train_dataset.lengths()
    model = trainer.model
    params = model.num_parameters()
    step_s = (timer.t_end - timer.t_warm) / (a.steps - a.warmup_steps)
    pad = pad_share(lengths, order, a.batch_size)
    real_per_s = a.batch_size * float(lengths.mean()) / step_s
    return {
        "variant": variant,
        "params": params,
        "step_ms": step_s * 1e3,
        "tokens_per_s": real_per_s,
        "positions_per_s": real_per_s / (1 - pad),
        "pad_share": pad,
        "mean_len": float(lengths.mean()),
        "samples_per_s": a.batch_size / step_s,
        "mfu": 6 * params * real_per_s / (a.peak_tflops * 1e12),
        "first_step_s": timer.t_first - timer.t_begin,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "train_loss": result.training_loss,
        "attn": getattr(model.config, "_attn_implementation", "?"),
        "head": "masked positions only" if getattr(model, "head_at_masked_positions_only", False) else "dense",
        "settings": {k: v for k, v in trainer.args.to_dict().items()
                     if k in ("bf16", "tf32", "optim", "dataloader_num_workers", "train_sampling_strategy",
                              "torch_compile")},
    }


# --------------------------------------------------------------------------- parent: run all, report


def child_argv(a: argparse.Namespace, variant: str) -> list[str]:
    """The command line that runs one variant in a fresh process."""
    flags = ["--architecture", a.architecture, "--vocab_size", a.vocab_size, "--seq_len", a.seq_len,
             "--batch_size", a.batch_size, "--steps", a.steps, "--warmup_steps", a.warmup_steps,
             "--peak_tflops", a.peak_tflops, "--seed", a.seed, "--data", a.data, "--tok", a.tok, "--cache", a.cache,
             "--one", variant]
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
    head = ["variant", "step ms", "real tokens/s", "positions/s", "pad share", "MFU (real tokens)", "vs defaults",
            "1st step s", "peak GiB", "loss", "wall s"]
    lines = [f"device: {device_name()}; torch {torch.__version__}; peak assumed {a.peak_tflops:g} TFLOP/s "
             f"(flag --peak_tflops; H100 SXM bf16 dense = 989)", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} |" + " |" * (len(head) - 2))
            continue
        vs = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "—"
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "—"
        lines.append(f"| {r['variant']} | {r['step_ms']:.1f} | {r['tokens_per_s']:,.0f} | {r['positions_per_s']:,.0f} "
                     f"| {r['pad_share']:.1%} | {r['mfu']:.1%} | {vs} | {r['first_step_s']:.1f} | {mem} "
                     f"| {r['train_loss']:.2f} | {r['wall_s']:.0f} |")
    ok = [r for r in results if "error" not in r]
    params = ok[0]["params"] if ok else 0
    notes = [
        f"command: `{cmd}`",
        f"model: {a.architecture} ({params / 1e6:.2f}M params, vocab {a.vocab_size}), "
        f"attention {ok[0]['attn'] if ok else '?'}; batch {a.batch_size}, blocks of <= {a.seq_len} ids "
        f"(--data {a.data}: mean {ok[0]['mean_len'] if ok else 0:.0f}); "
        f"{a.steps} steps, timed {a.steps - a.warmup_steps} after {a.warmup_steps} warm-up steps",
        "MFU = 6 x params x real (non-pad) tokens/s / peak (attention-score FLOPs not counted)",
    ]
    notes += [f"{r['variant']}: head {r['head']}, TrainingArguments {json.dumps(r['settings'])}" for r in ok]
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
    ap.add_argument("--data", choices=("real", "full"), default="real",
                    help="real: block lengths as packing gives them on text-like lines; full: every block full")
    ap.add_argument("--lines", type=int, help="corpus lines for --data real")
    ap.add_argument("--peak_tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="peak bf16 TFLOP/s for MFU")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS,
                    help=f"default: {' '.join(VARIANTS)} on GPU, 'defaults ours' with --smoke")
    ap.add_argument("--variant_timeout", type=int, help="seconds per variant subprocess")
    ap.add_argument("--budget_s", type=float, default=280,
                    help="wall seconds for all variants: a variant is cut short or skipped rather than overrun")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "gpu_train")
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--tok", help=argparse.SUPPRESS)  # internal: the parent's tokenizer and cache
    ap.add_argument("--cache", help=argparse.SUPPRESS)
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
    work = Path(tempfile.mkdtemp(prefix="gpu_train_"))
    tok, cache = build_data(a, work)
    a.tok, a.cache = str(tok), str(cache)
    log(f"cache ready ({time.perf_counter() - _T0:.0f} s)")
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
