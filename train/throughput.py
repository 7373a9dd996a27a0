"""Speed in the training logs: real tokens/s, samples/s, model TFLOP/s and MFU per device, time left, tokens seen.

A run lasts days on rented GPUs, so every logging step carries, beside the loss
(exact names: the model card reads them from trainer_state.json's log_history):

    tokens_per_second   real (non-pad) tokens trained over the interval since the last log, all processes
    samples_per_second  blocks trained over that interval, all processes
    tflops_per_second   achieved model FLOPs per second per device
    mfu                 percent of the device's peak (the table below or --peak_tflops); not on the CPU without it
    seconds_left        to the run's last step, at the wall-clock pace since the first log (evaluations included)
    tokens_seen         real tokens trained since step 0; TrainerState.num_input_tokens_seen, so checkpoints keep it

**Counted on the host, never asked of the GPU.** The data order is a function
(train/order.py): the samples a step trains on are the global batch after the
previous step's, and the cache gives every block's length. So the real tokens,
and the sums the FLOPs need, come from numpy on lengths already in memory,
once per step and for all processes at once: no device value is read, no
collective runs (tests/train/test_step.py's recorder watches this path too).
Time spent evaluating and saving is left out of the rates.

**Model FLOPs.** A training step's matmul FLOPs (forward and backward) for a
block of ``L`` real tokens are ``a L + b L^2 + c h``: ``a`` per token (the
linear layers), ``b`` per pair of tokens (attention scores and their use),
``c`` per row of the masked-positions head (train/model.py), which runs on the
masked ~15% of the tokens only, ``h = p x`` the block's maskable tokens (all
but bos/eos). Padding and the head's spare rows are work the GPU does but not
model FLOPs, as PaLM's MFU counts them. ``a``, ``b`` and ``c`` are counted,
not assumed: ``torch.utils.flop_counter`` on three forward+backward passes of
a meta-device copy of the model at small shapes (exact: FLOP counts are
polynomials in the shape). roberta-base: 5.10e8 per token, 1.1e5 per pair,
2.35e8 per head row: PaLM's ``6N + 12 L H Q T`` for the encoder, plus the
head on 15%: 6.01e8 per token at 512. Measured start-up on roberta-base, 2 busy CPU
cores: by formula from the config, microseconds, but right for one family
only; the counter on the model's own device for one 1 x 512 block, 23 s on
the CPU (on a GPU, a step's time and memory, and a dropout draw from the
RNG); on the meta copy, 1.2-3 s, no memory, no RNG, any architecture the
model table gains (ModernBERT's too). Chosen: the meta copy.
"""

from __future__ import annotations

import copy
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from train.model import head_at_masked_positions_only
from train.order import DataOrder
from train.sampling import CHUNK, global_batch


class Peak(NamedTuple):
    """A GPU's dense (no 2:4 sparsity) peak TFLOP/s in each matmul mode; None: it has no such mode."""

    pattern: str  # searched in torch.cuda.get_device_name(); the first entry that matches wins
    label: str
    bf16: float | None  # tensor cores, fp32 accumulate (what autocast's matmuls use)
    fp16: float | None
    tf32: float | None  # tensor cores on fp32 inputs (--tf32)
    fp32: float  # without tensor cores


# Datasheets give tensor-core figures with sparsity (marked *): halved here. Sources per entry.
PEAKS = (
    # HGX B200 datasheet, per GPU of 8: 36 PF bf16*, 18 PF tf32*, 600 TF fp32
    Peak(r"B200", "B200", 2250.0, 2250.0, 1125.0, 75.0),
    # GH200 datasheet: its GPU is an H100 SXM. H200 datasheet: SXM as H100 SXM; NVL 1671*, 835*, 60
    Peak(r"GH200", "GH200", 989.4, 989.4, 494.7, 66.9),
    Peak(r"H200 NVL", "H200 NVL", 835.5, 835.5, 417.5, 60.0),
    Peak(r"H200", "H200 SXM", 989.4, 989.4, 494.7, 66.9),
    # H100 datasheet: SXM 1979*, 989*, 67; PCIe 1513*, 756*, 51; NVL 1671*, 835*, 60
    Peak(r"H100 NVL", "H100 NVL", 835.5, 835.5, 417.5, 60.0),
    Peak(r"H100.*PCIe", "H100 PCIe", 756.5, 756.5, 378.0, 51.2),
    Peak(r"H100", "H100 SXM", 989.4, 989.4, 494.7, 66.9),
    # A100 datasheet (SXM and PCIe, 40 and 80 GB): 624*, 312*, 19.5
    Peak(r"A100", "A100", 312.0, 312.0, 156.0, 19.5),
    # AWS's A10G has no NVIDIA datasheet: Baseten's "NVIDIA A10 vs A10G" spec table (70, 35, 35)
    Peak(r"A10G", "A10G", 70.0, 70.0, 35.0, 35.0),
    # A10 datasheet: 250*, 125*, 31.2
    Peak(r"A10\b", "A10", 125.0, 125.0, 62.5, 31.2),
    # L40S datasheet: 733*, 366*, 91.6 (its dense bf16 is printed: 362.05); L40: 362*, 181*, 90.5; L4: 242*, 120*, 30.3
    Peak(r"L40S", "L40S", 362.05, 362.05, 183.0, 91.6),
    Peak(r"L40\b", "L40", 181.05, 181.05, 90.5, 90.5),
    Peak(r"L4\b", "L4", 121.0, 121.0, 60.0, 30.3),
    # A40 datasheet: 299.4*, 149.6*, 37.4; A30 datasheet: 330*, 165*, 10.3
    Peak(r"A40\b", "A40", 149.7, 149.7, 74.8, 37.4),
    Peak(r"A30\b", "A30", 165.0, 165.0, 82.0, 10.3),
    # V100 datasheet: fp16 tensor cores only (no bf16, no tf32): V100S 130, PCIe 112, SXM2 125; T4 datasheet: 65
    Peak(r"V100S", "V100S", None, 130.0, None, 16.4),
    Peak(r"V100.*PCIE", "V100 PCIe", None, 112.0, None, 14.0),
    Peak(r"V100", "V100 SXM2", None, 125.0, None, 15.7),
    Peak(r"T4\b", "T4", None, 65.0, None, 8.1),
    # Ada whitepaper, appendix (fp16/bf16 with fp32 accumulate): RTX 4090 165.2, 82.6, 82.6; RTX 6000 Ada
    # 364.2, 182.1, 91.1. Ampere GA102 whitepaper: RTX 3090 71, 35.6, 35.6. RTX A6000 datasheet: 309.7*, 38.7
    Peak(r"RTX 4090", "RTX 4090", 165.2, 165.2, 82.6, 82.6),
    Peak(r"RTX 6000 Ada", "RTX 6000 Ada", 364.2, 364.2, 182.1, 91.1),
    Peak(r"RTX 3090", "RTX 3090", 71.0, 71.0, 35.6, 35.6),
    Peak(r"RTX A6000", "RTX A6000", 154.8, 154.8, 77.4, 38.7),
)


def precision(args: TrainingArguments) -> str:
    """The run's matmul mode: bf16 or fp16 (autocast), tf32 (fp32 inputs on tensor cores) or fp32."""
    if args.bf16 or args.fp16:
        return "bf16" if args.bf16 else "fp16"
    matmul = torch.backends.cuda.matmul
    tf32 = matmul.fp32_precision == "tf32" if hasattr(matmul, "fp32_precision") else matmul.allow_tf32  # torch < 2.9
    return "tf32" if tf32 else "fp32"


def table_peak(device_name: str, mode: str) -> tuple[str, float | None] | None:
    """(label, peak TFLOP/s in ``mode``) of the first entry matching the name; None: not in the table.
    A GPU without tf32 runs fp32 matmuls at its fp32 peak."""
    for peak in PEAKS:
        if re.search(peak.pattern, device_name):
            value = getattr(peak, mode)
            return peak.label, peak.fp32 if value is None and mode == "tf32" else value
    return None


def find_peak(args: TrainingArguments, given: float | None) -> tuple[float | None, str]:
    """The peak TFLOP/s mfu is taken against (None: mfu is not logged) and what the start-up note says of it."""
    mode = precision(args)
    if given is not None:
        return given, f"mfu against --peak_tflops {given:g}"
    if args.device.type != "cuda":
        return None, f"mfu not logged on {args.device.type} (give --peak_tflops to log it)"
    name = torch.cuda.get_device_name(args.device)
    found = table_peak(name, mode)
    if found is None or found[1] is None:
        why = f"no {mode} peak for {name}" if found else f"no peak TFLOP/s known for {name}"
        return None, f"{why}: mfu not logged; --peak_tflops <its dense {mode} TFLOP/s> logs it"
    return found[1], f"mfu against {found[1]:g} TFLOP/s ({found[0]}, dense {mode})"


@dataclass(frozen=True)
class FlopsModel:
    """A training step's model FLOPs (forward + backward) per real token, pair of tokens and masked position."""

    per_token: float
    per_pair: float
    per_head_row: float

    def total(self, tokens: float, pairs: float, head_rows: float) -> float:
        return self.per_token * tokens + self.per_pair * pairs + self.per_head_row * head_rows

    def per_token_at(self, length: int, p: float) -> float:
        """FLOPs per token of a block of ``length`` real tokens, ``p`` of its maskable ones masked."""
        return self.total(length, length**2, p * max(length - 2, 0)) / length


def count_flops(model: torch.nn.Module) -> FlopsModel:
    """``a``, ``b``, ``c`` of ``a T + b T^2 + c H``: one block of T tokens, the head on H rows, counted by
    FlopCounterMode on a meta-device copy (no memory, no compute, no RNG draw) at three small shapes."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        meta = type(model)(copy.deepcopy(model.config))
    masked_only = bool(getattr(model, "head_at_masked_positions_only", False)) and head_at_masked_positions_only(meta)

    def step(width: int, rows: int) -> int:
        ids = torch.zeros((1, width), dtype=torch.long, device="meta")
        head = {"head_positions": torch.zeros(rows, dtype=torch.long, device="meta")} if masked_only else {}
        with FlopCounterMode(display=False) as counter:
            loss = meta(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros_like(ids), **head).loss
            loss.backward()
        return counter.get_total_flops()

    t1, t2, h1, h2 = 8, 16, 4, 8
    f11, f21, f12 = step(t1, h1), step(t2, h1), step(t1, h2)
    c = (f12 - f11) / (h2 - h1)
    g1, g2 = f11 - c * h1, f21 - c * h1  # a t + b t^2
    b = (g2 - g1 * t2 / t1) / (t2 * t2 - t1 * t2)
    return FlopsModel(per_token=(g1 - b * t1 * t1) / t1, per_pair=b, per_head_row=c)


class StreamSums:
    """Sums over the run's samples ``[first, last)`` in stream order of: real tokens, their squares, maskable
    tokens (all but bos and eos), then each corpus's real tokens (one column per corpus of the order). From the
    order and the blocks' lengths, ``CHUNK`` samples worked out at a time."""

    def __init__(self, order: DataOrder):
        self.order, self.start = order, -1
        self.offsets = np.array([c.offset for c in order.corpora], dtype=np.int64)  # where each corpus's blocks start
        self.width = 3 + len(order.corpora)
        self.prefix = np.zeros((1, self.width), dtype=np.int64)

    def _load(self, start: int) -> None:
        blocks = self.order.blocks(start, CHUNK)
        lengths = self.order.lengths[blocks].astype(np.int64)
        corpus = np.searchsorted(self.offsets, blocks, side="right") - 1
        per_corpus = np.zeros((len(blocks), len(self.offsets)), dtype=np.int64)
        per_corpus[np.arange(len(blocks)), corpus] = lengths
        columns = np.concatenate([np.stack([lengths, lengths * lengths, np.maximum(lengths - 2, 0)], axis=1),
                                  per_corpus], axis=1)
        self.start = start
        self.prefix = np.concatenate([np.zeros((1, self.width), np.int64), np.cumsum(columns, axis=0)])

    def __call__(self, first: int, last: int) -> np.ndarray:
        total = np.zeros(self.width, dtype=np.int64)
        while first < last:
            start = first // CHUNK * CHUNK
            if start != self.start:
                self._load(start)
            end = min(last, start + CHUNK)
            total += self.prefix[end - start] - self.prefix[first - start]
            first = end
        return total


class Throughput(TrainerCallback):
    """Counts each step's samples as it ends and adds the speed keys to each training log
    (``MlmTrainer.log`` calls ``add_to``: a callback's on_log runs after the log is recorded)."""

    def __init__(self, trainer: Any, peak_tflops: float | None = None):
        self.trainer, self.peak_tflops = trainer, peak_tflops  # --peak_tflops
        self.flops: FlopsModel | None = None
        self.peak: float | None = None
        self.sums: StreamSums | None = None  # set when training begins: until then (evaluate() alone) no-ops
        self.paused, self.logged_step, self.mark = 0.0, 0, time.perf_counter()
        # real tokens trained per corpus ("train" for an unnamed cache), carried over from the checkpoint a run
        # resumes (``restore``); None when that checkpoint kept no count (an older one): then it is not known
        self.corpus_tokens: dict[str, int] | None = {}

    def restore(self, counts: dict[str, int] | None) -> None:
        """The per-corpus counts a resumed checkpoint recorded (train/provenance.py), or None if it has none."""
        self.corpus_tokens = dict(counts) if counts is not None else None

    def sample_at(self, step: int) -> int:
        """The stream position after optimizer step ``step``: every sample before it trained (train/run.py)."""
        t = self.trainer
        return t.sample_start + (step - t.resumed_at[0]) * self.batch

    def rate(self, sample: int) -> float:
        """The masking rate of training sample ``sample``: its step's under --mlm_probability_schedule."""
        collator = self.trainer.collator
        schedule = getattr(collator, "schedule", None)
        if schedule is None:
            return float(collator.mlm_probability)
        return float(schedule.rate(np.array([sample // schedule.global_batch]))[0])

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        notes = []
        if args.include_num_input_tokens_seen not in ("no", False):  # it would read the GPU every step
            args.include_num_input_tokens_seen = "no"
            notes.append("--include_num_input_tokens_seen off: tokens_seen (real tokens, counted on the host) "
                         "replaces it")
        self.batch, self.sums = global_batch(args), StreamSums(self.trainer.data_order())
        self.devices = max(args.world_size, 1) * max(args.n_gpu, 1)
        self.counted, self.interval = state.global_step, np.zeros(3)  # tokens, pairs, head rows
        p, width = self.rate(self.sample_at(state.global_step)), self.trainer.collator.max_width or 512
        if self.flops is None:
            try:
                self.flops = count_flops(self.trainer.accelerator.unwrap_model(self.trainer.model))
            except Exception as e:  # noqa: BLE001  (the rates without FLOPs are still worth logging)
                notes.append(f"model FLOPs not counted ({type(e).__name__}: {e}): no tflops_per_second or mfu")
        if self.flops is not None:
            self.peak, said = find_peak(args, self.peak_tflops)
            notes.append(f"model FLOPs per token: {self.flops.per_token_at(width, p):.3g} at {width}-token blocks, "
                         f"{p:.0%} masked; {said}")
        if state.is_world_process_zero:
            for note in notes:
                tqdm.write(f"note: {note}", file=sys.stderr)  # above the progress bar the Trainer has opened
        self.last_log = self.mark = time.perf_counter()
        self.paused, self.logged_step = 0.0, state.global_step
        self.pace_from, self.warm = (self.last_log, state.global_step), False  # the pace seconds_left assumes

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.sums is None:
            return
        first = self.sample_at(self.counted)
        sums = self.sums(first, self.sample_at(state.global_step))
        tokens, pairs, maskable = sums[:3]
        self.interval += (tokens, pairs, self.rate(first) * maskable)
        state.num_input_tokens_seen += int(tokens)  # in every checkpoint's trainer_state.json: a resume goes on
        if self.corpus_tokens is not None:
            for corpus, n in zip(self.sums.order.corpora, sums[3:]):
                self.corpus_tokens[corpus.name] = self.corpus_tokens.get(corpus.name, 0) + int(n)
        self.counted, self.mark = state.global_step, time.perf_counter()

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._pause()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._pause()

    def _pause(self) -> None:
        """Time since the step ended (or the last pause) was spent evaluating or saving, not training."""
        now = time.perf_counter()
        self.paused += now - self.mark
        self.mark = now

    def add_to(self, logs: dict[str, float], state: TrainerState) -> None:
        """The speed keys, into a training log (one with ``loss``), over the interval since the last."""
        if "loss" not in logs or self.sums is None:  # not a training log, or no training yet (evaluate() alone)
            return
        steps = state.global_step - self.logged_step
        if steps <= 0:
            return
        now = time.perf_counter()
        seconds = now - self.last_log - self.paused
        if seconds > 0:
            tokens, pairs, head = self.interval
            logs["tokens_per_second"] = round(tokens / seconds)
            logs["samples_per_second"] = steps * self.batch / seconds
            if self.flops is not None:
                tflops = self.flops.total(tokens, pairs, head) / seconds / self.devices / 1e12
                logs["tflops_per_second"] = tflops
                if self.peak:
                    logs["mfu"] = 100.0 * tflops / self.peak
        start_time, start_step = self.pace_from
        pace = (now - start_time) / max(state.global_step - start_step, 1)  # wall seconds a step, all included
        logs["seconds_left"] = round(max(state.max_steps - state.global_step, 0) * pace)
        logs["tokens_seen"] = int(state.num_input_tokens_seen)
        if not self.warm:  # the first interval holds the start-up: later paces leave it out
            self.pace_from, self.warm = (now, state.global_step), True
        self.last_log = self.mark = now
        self.paused, self.logged_step, self.interval = 0.0, state.global_step, np.zeros(3)
