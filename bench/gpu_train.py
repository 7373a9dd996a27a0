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
  - ``ours_compile``: ``ours`` + ``--torch_compile true``;
  - ``bare_dense`` / ``bare_masked`` (not run unless named): the model alone,
    no Trainer and no DataLoader: one full batch already on the GPU, bf16
    autocast, fused AdamW, forward + backward + step in a plain loop, with
    the dense head or ours. Against the Trainer rows they say how much of a
    step is the model and how much the harness around it.

``--profile N``: each Trainer variant also runs ``torch.profiler`` over the N
steps just before the clock starts (so the timing stays clean) and writes the
ops that take the most GPU and CPU time to ``<out>.<variant>.prof.txt``.

Step time is steady state: a ``TrainerCallback`` synchronises the GPU at the
end of step ``--warmup_steps`` and of the last step and divides. Unless
``--warmup_steps`` is given, the warm-up is one epoch of the bench corpus
(``--lines`` sets its size), so every batch width has been seen before the
clock starts: the first time a shape appears, cuDNN builds its attention
graphs and torch.compile may recompile. On an H100, a 45-step window of
batches grouped by length that met 17 widths for the first time ran 117 ms
per step against 53 for the model alone; the median step, also reported,
shows what a step costs once its shape is known. Real
tokens/s counts only non-pad ids: batch x mean example length / step time
(the mean over the epoch the sampler deals); positions/s counts what the
model computes, pad included, and the pad share is that of the variant's own
batches. MFU = 6 x params x real tokens/s / peak, params =
``model.num_parameters()`` (attention-score FLOPs not counted, so MFU is a
slight underestimate).

``--architecture`` takes any shipped config (train/configs/): for
``modernbert-base`` the attention is, unless ``--attn_implementation`` says,
flash_attention_2 where the flash-attn package imports on a CUDA GPU (each
layer's attention then skips the padding: transformers unpads it from the 2D
mask, asking the GPU for the lengths) and SDPA on padded batches otherwise
(no wait: train/model.py builds its masks from shapes). ``ours`` gets it
through a copy of the config with ``attn_implementation`` set, passed as
``--config_name``.

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
VARIANTS = ("defaults", "ours", "ours_compile", "bare_dense", "bare_masked")
DEFAULT_VARIANTS = ("defaults", "ours", "ours_compile")
_T0 = time.perf_counter()
RESULT_TAG = "RESULT "

# Full run (GPU) vs --smoke (CPU): the shape of the work.
FULL = {"architecture": "roberta-base", "vocab_size": 50265, "seq_len": 512, "batch_size": 32, "timed_steps": 45,
        "warmup_steps": 15, "lines": 20_000, "variant_timeout": 150}
SMOKE = {"architecture": "roberta-tiny", "vocab_size": 1000, "seq_len": 128, "batch_size": 8, "timed_steps": 8,
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
            self.stamps: list[float] = []  # every step's end, unsynchronised: the CPU runs < 1 step ahead

        def median_step_s(self) -> float:
            return float(np.median(np.diff(self.stamps[warmup_steps - 1:])))

        def on_train_begin(self, args, state, control, **kwargs):
            sync()
            self.t_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())
            if state.global_step in (1, warmup_steps, state.max_steps):
                sync()
                now = time.perf_counter()
                if state.global_step == 1:
                    self.t_first = now
                if state.global_step == warmup_steps:
                    self.t_warm = now
                if state.global_step == state.max_steps:
                    self.t_end = now
                self.stamps[-1] = now

    return StepTimer()


def make_sync_check(warmup_steps: int) -> Any:
    """A TrainerCallback that runs every timed step under torch.cuda.set_sync_debug_mode("warn") and counts
    the host-device waits it reports inside steps (logging, between steps, may wait: it reads the loss)."""
    import warnings

    from transformers import TrainerCallback

    class SyncCheck(TrainerCallback):
        def __init__(self) -> None:
            self.waits: list[str] = []
            self._caught: Any = None

        def on_step_begin(self, args, state, control, **kwargs):
            if torch.cuda.is_available() and state.global_step >= warmup_steps:
                self._caught = warnings.catch_warnings(record=True)
                self._records = self._caught.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

        def on_step_end(self, args, state, control, **kwargs):
            if self._caught is not None:
                torch.cuda.set_sync_debug_mode("default")
                self.waits += [str(w.message).splitlines()[0][:120] for w in self._records
                               if "synchroniz" in str(w.message)]
                self._caught.__exit__(None, None, None)
                self._caught = None

    return SyncCheck()


def make_profiler(a: argparse.Namespace, variant: str) -> Any:
    """A TrainerCallback profiling steps (warmup - N, warmup]; it stops before the timer's clock starts."""
    from transformers import TrainerCallback

    first, last = a.warmup_steps - a.profile, a.warmup_steps

    class StepProfiler(TrainerCallback):
        prof = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == first:
                sync()
                self.prof = torch.profiler.profile(record_shapes=False)
                self.prof.start()
            elif state.global_step == last and self.prof is not None:
                sync()
                self.prof.stop()
                write_profile(self.prof, a, variant, a.profile)

    return StepProfiler()


def write_profile(prof: Any, a: argparse.Namespace, variant: str, steps: int) -> None:
    """The top ops by GPU time and by CPU time, and how busy the GPU was, to <out>.<variant>.prof.txt."""
    events = prof.key_averages()
    gpu_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
    cpu_us = sum(e.self_cpu_time_total for e in events)
    head = (f"{variant}: {steps} steps profiled; GPU kernel time {gpu_us / 1e3 / steps:.1f} ms/step, "
            f"CPU op time {cpu_us / 1e3 / steps:.1f} ms/step\n")
    by_gpu = events.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=60)
    by_cpu = events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)
    path = Path(str(a.out) + f".{variant}.prof.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n## by GPU time\n" + by_gpu + "\n## by CPU time\n" + by_cpu)
    log(head.strip())


def attention_for(architecture: str, asked: str | None) -> str | None:
    """``--attn_implementation`` as given; else, for ModernBERT, flash_attention_2 where flash-attn imports on a CUDA
    GPU and sdpa elsewhere; else None (transformers' default, as before)."""
    import importlib.util

    if asked or not architecture.startswith("modernbert"):
        return asked
    return "flash_attention_2" if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") else "sdpa"


def fitted_config(a: argparse.Namespace) -> Any:
    """The shipped config with the bench tokenizer's vocabulary and every special id the config carries
    (ModernBERT's placeholder pad 50283 would not even build in a 50,265-id vocabulary)."""
    from transformers import AutoConfig

    from common.manifest import SpecialIds
    from train.model import fit_to_tokenizer

    config = AutoConfig.from_pretrained(REPO / "train" / "configs" / f"{a.architecture}.json")
    fit_to_tokenizer(config, a.vocab_size, SpecialIds(0, 2, 1, 3, a.vocab_size - 1), fresh=True)  # make_tokenizer's
    return config


def run_bare(a: argparse.Namespace, masked_only: bool) -> dict[str, Any]:
    """The model alone in a loop: one full batch, bf16 autocast, fused AdamW (no Trainer, no DataLoader)."""
    from transformers import AutoModelForMaskedLM

    from train.model import head_at_masked_positions_only

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = fitted_config(a)
    torch.manual_seed(a.seed)
    attn = {"attn_implementation": a.attn_implementation} if a.attn_implementation else {}
    model = AutoModelForMaskedLM.from_config(config, **attn).to(device)
    if masked_only:
        head_at_masked_positions_only(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(4, a.vocab_size - 1, (a.batch_size, a.seq_len), generator=g).to(device)
    labels = torch.where(torch.rand(ids.shape, generator=g).to(device) < 0.15, ids, -100)
    attention = torch.ones_like(ids)
    times = []
    for _ in range(a.steps):
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter())
    step_s = (times[-1] - times[a.warmup_steps - 1]) / (a.steps - a.warmup_steps)
    return {"step_s": step_s, "median_step_s": float(np.median(np.diff(times[a.warmup_steps - 1:]))), "first_step_s": times[0] - _T0, "loss": float(loss), "params": model.num_parameters(),
            "attn": getattr(model.config, "_attn_implementation", "?"),
            "head": "masked positions only" if masked_only else "dense"}


def run_defaults(a: argparse.Namespace, out: str, callbacks: list[Any]) -> tuple[Any, Any, np.ndarray]:
    """The plain transformers setup: (trainer, train result, the order its sampler deals)."""
    from train_cpu import plain_trainer

    training = checked({**harness_args(out, a.steps, a.seed), "bf16": True, "per_device_train_batch_size": a.batch_size})
    trainer = plain_trainer(a.architecture, a.tok, a.cache, a.seq_len, a.seed, training, callbacks,
                            attn_implementation=a.attn_implementation)
    result = trainer.train()
    return trainer, result, np.random.default_rng(a.seed).permutation(len(trainer.train_dataset))


def run_ours(a: argparse.Namespace, out: str, callbacks: list[Any], compile_: bool) -> tuple[Any, Any, np.ndarray]:
    """mlm-train as its command line sets it up: (trainer, train result, the order its sampler deals)."""
    from train.config import announce, parse
    from train.run import train

    model = ["--architecture", a.architecture]
    if a.attn_implementation:  # mlm-train takes the attention from the config: a copy that names it
        config = json.loads((REPO / "train" / "configs" / f"{a.architecture}.json").read_text())
        path = Path(out) / f"{a.architecture}.json"
        path.write_text(json.dumps({**config, "attn_implementation": a.attn_implementation}))
        model = ["--config_name", str(path)]
    flags = ["--tokenizer_name_or_path", a.tok, "--datasets_cache_dir", a.cache, "--max_seq_length", str(a.seq_len),
             *model, "--output_dir", out, "--max_steps", str(a.steps),
             "--per_device_train_batch_size", str(a.batch_size), "--save_strategy", "no", "--report_to", "none",
             "--disable_tqdm", "true", "--seed", str(a.seed)]
    if torch.cuda.is_available():
        flags += ["--bf16"]
    if compile_:
        flags += ["--torch_compile", "true"]
    parsed = parse(flags, "mlm-train")
    announce(parsed)
    metrics, trainer = train(parsed.cache, parsed.model, parsed.mlm, parsed.training, callbacks=callbacks)
    sampler = trainer._get_train_sampler()
    order = sampler.order.blocks(0, sampler.per_epoch)
    return trainer, types.SimpleNamespace(training_loss=metrics.get("train_loss", float("nan"))), order


def run_variant(variant: str, a: argparse.Namespace) -> dict[str, Any]:
    """Train one variant in this process and return its numbers as a dict (printed as one JSON line)."""
    from train.sampling import pad_share

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if variant.startswith("bare_"):
        b = run_bare(a, variant == "bare_masked")
        per_s = a.batch_size * a.seq_len / b["step_s"]
        return {"variant": variant, "params": b["params"], "step_ms": b["step_s"] * 1e3,
                "median_step_ms": b["median_step_s"] * 1e3, "tokens_per_s": per_s,
                "positions_per_s": per_s, "pad_share": 0.0, "mean_len": float(a.seq_len),
                "samples_per_s": a.batch_size / b["step_s"], "mfu": 6 * b["params"] * per_s / (a.peak_tflops * 1e12),
                "first_step_s": b["first_step_s"],
                "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                "train_loss": b["loss"], "attn": b["attn"], "head": b["head"], "settings": {"loop": "bare, full blocks"}}
    timer = make_timer(a.warmup_steps)
    callbacks = [make_profiler(a, variant), timer] if a.profile else [timer]  # profiler stops before the clock
    sync_check = make_sync_check(a.warmup_steps) if variant.startswith("ours") else None
    callbacks += [sync_check] if sync_check else []
    with tempfile.TemporaryDirectory() as out:
        if variant == "defaults":
            trainer, result, order = run_defaults(a, out, callbacks)
        else:
            trainer, result, order = run_ours(a, out, callbacks, variant == "ours_compile")
    lengths = trainer.train_dataset.lengths()
    model = trainer.model
    params = model.num_parameters()
    step_s = (timer.t_end - timer.t_warm) / (a.steps - a.warmup_steps)
    # the plain collator pads to the longest block of a batch; ours to a multiple of 64 (train/collator.py)
    pad = (pad_share(lengths, order, a.batch_size, multiple=1) if variant == "defaults" else
           pad_share(lengths, order, a.batch_size, trainer.collator.multiple, trainer.collator.max_width))
    real_per_s = a.batch_size * float(lengths.mean()) / step_s
    return {
        "variant": variant,
        "params": params,
        "step_ms": step_s * 1e3,
        "median_step_ms": timer.median_step_s() * 1e3,
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
        "waits_in_steps": None if sync_check is None or not cuda else len(sync_check.waits),
        "first_wait": sync_check.waits[0] if sync_check and sync_check.waits else None,
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
             "--profile", a.profile, "--out", a.out, "--one", variant,
             *(["--attn_implementation", a.attn_implementation] if a.attn_implementation else [])]
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
    head = ["variant", "step ms", "median step ms", "real tokens/s", "positions/s", "pad share", "MFU (real tokens)", "vs defaults",
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
        lines.append(f"| {r['variant']} | {r['step_ms']:.1f} | {r['median_step_ms']:.1f} | {r['tokens_per_s']:,.0f} | {r['positions_per_s']:,.0f} "
                     f"| {r['pad_share']:.1%} | {r['mfu']:.1%} | {vs} | {r['first_step_s']:.1f} | {mem} "
                     f"| {r['train_loss']:.2f} | {r['wall_s']:.0f} |")
    ok = [r for r in results if "error" not in r]
    params = ok[0]["params"] if ok else 0
    notes = [
        f"command: `{cmd}`",
        f"model: {a.architecture} ({params / 1e6:.2f}M params, vocab {a.vocab_size}), "
        f"attention {ok[0]['attn'] if ok else '?'}; batch {a.batch_size}, blocks of <= {a.seq_len} ids "
        f"(--data {a.data}: mean {ok[0]['mean_len'] if ok else 0:.0f}); "
        f"{a.steps} steps, timed {a.steps - a.warmup_steps} after {a.warmup_steps} warm-up steps"
        + (f" (one epoch of {a.epoch_batches} batches: every batch width seen before the clock)" if a.epoch_batches
           else ""),
        "MFU = 6 x params x real (non-pad) tokens/s / peak (attention-score FLOPs not counted)",
    ]
    notes += [f"{r['variant']}: head {r['head']}, TrainingArguments {json.dumps(r['settings'])}" for r in ok]
    notes += [f"{r['variant']}: host-device waits inside the timed steps (torch.cuda.set_sync_debug_mode): "
              f"{r['waits_in_steps']}" + (f", first: {r['first_wait']}" if r.get("first_wait") else "")
              for r in ok if r.get("waits_in_steps") is not None]
    if a.smoke:
        notes.append("--smoke: CPU, tiny model, a few steps; proves the script runs end to end, not a speed number")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run (< 1 min) proving the script end to end")
    ap.add_argument("--timed_steps", type=int, help=f"optimizer steps on the clock (default {FULL['timed_steps']})")
    ap.add_argument("--warmup_steps", type=int,
                    help="steps before the clock (default: one epoch of the corpus, at least "
                         f"{FULL['warmup_steps']}; with --smoke {SMOKE['warmup_steps']})")
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)  # internal: warm-up + timed, set by the parent
    ap.add_argument("--batch_size", type=int, help=f"per-device batch (default {FULL['batch_size']})")
    ap.add_argument("--seq_len", type=int, help=f"tokens per block (default {FULL['seq_len']})")
    ap.add_argument("--vocab_size", type=int, help=f"synthetic vocabulary (default {FULL['vocab_size']})")
    ap.add_argument("--architecture", help=f"train/configs/<name>.json (default {FULL['architecture']})")
    ap.add_argument("--attn_implementation", choices=("sdpa", "eager", "flash_attention_2"),
                    help="attention kernel of every variant (default: transformers' own; for modernbert-* "
                         "flash_attention_2 where flash-attn imports on a CUDA GPU, else sdpa)")
    ap.add_argument("--data", choices=("real", "full"), default="real",
                    help="real: block lengths as packing gives them on text-like lines; full: every block full")
    ap.add_argument("--lines", type=int, help="corpus lines for --data real")
    ap.add_argument("--peak_tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="peak bf16 TFLOP/s for MFU")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS,
                    help=f"default: {' '.join(VARIANTS)} on GPU, 'defaults ours' with --smoke")
    ap.add_argument("--variant_timeout", type=int, help="seconds per variant subprocess")
    ap.add_argument("--budget_s", type=float, default=280,
                    help="wall seconds for all variants: a variant is cut short or skipped rather than overrun")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile N steps before the clock of each Trainer variant; top ops to <out>.<variant>.prof.txt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "gpu_train")
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--tok", help=argparse.SUPPRESS)  # internal: the parent's tokenizer and cache
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    shape = SMOKE if a.smoke else FULL
    a.warm_epoch = a.warmup_steps is None and not a.smoke and a.one is None
    a.epoch_batches = 0
    for k, v in shape.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.steps is None:
        a.steps = a.warmup_steps + a.timed_steps
    a.attn_implementation = attention_for(a.architecture, a.attn_implementation)
    if a.variants is None:
        a.variants = ["defaults", "ours"] if a.smoke else list(DEFAULT_VARIANTS)
    if a.warmup_steps < 1 or a.timed_steps < 2 or a.steps <= a.warmup_steps:
        ap.error("need --warmup_steps >= 1 and --timed_steps >= 2")
    if not 0 <= a.profile < a.warmup_steps:
        ap.error("need 0 <= --profile < --warmup_steps (profiled steps come before the clock)")
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
    if a.warm_epoch:
        from train.dataset import MemmapConcatFullSentenceTextDataset

        a.epoch_batches = -(-len(MemmapConcatFullSentenceTextDataset(cache / "train", a.seq_len)) // a.batch_size)
        a.warmup_steps = max(a.warmup_steps, a.epoch_batches + 1)
        a.steps = a.warmup_steps + a.timed_steps
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
