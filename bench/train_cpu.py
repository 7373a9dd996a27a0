#!/usr/bin/env python
"""The train stage against a plain transformers setup, side by side on the CPU, in one run.

* data: a corpus of made-up words ``w<id>`` whose line lengths follow a
  long-tailed (log-normal) law like real text, preprocessed by our own
  ``mlm-preprocess`` into FULL-SENTENCES blocks, so the block lengths are
  those packing really gives; tokenizer: a WordLevel vocabulary of
  ``--vocab_size`` ids with RoBERTa's special ids, made in memory;
* rows (each variant alternates with the other, ``--repeats`` times; the
  fastest run of each counts):

  1. train samples/s at ``--seq_len`` (256) of ``mlm-train`` (``train.run.train``,
     parsed from its command line, so every default it sets applies) vs a
     plain ``Trainer`` + ``RobertaForMaskedLM`` + ``DataCollatorForLanguageModeling``
     over our ``MemmapConcatFullSentenceTextDataset``: same cache, config,
     batch, seed, steps;
  2. the host cost of a step: ms/step of the same two with roberta-tiny at
     ``--host_seq_len`` (128), where the model is so small that the step is
     mostly data loading, collation, masking and Trainer bookkeeping (what
     decides whether one CPU thread can feed a fast GPU);
  3. seconds per optimizer step of roberta-base at 512 ids with the dense
     prediction head vs the masked-positions-only head, on the same masked
     batches (vocabulary ``--head_vocab``, RoBERTa's 50,265);
  4. the share of pad positions in the batches built from the 512-id blocks:
     random batches vs batches grouped by length;
  5. row 3 for each of ``--head_architectures`` (modernbert-base), on the same
     batches; for ModernBERT also the masked-positions head vs its own
     ``sparse_prediction`` (the labelled rows by a boolean index: the same
     rows, but a host-device wait on a GPU). ``--only_architectures``: these
     rows alone.

Steady state: the first ``--warmup`` steps are not timed.
``--smoke`` runs it all in seconds with roberta-tiny: it proves the script, not speed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout too, not only where the project is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402


def log(msg: str) -> None:
    print(f"[train_cpu {time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.perf_counter()


def make_tokenizer(vocab_size: int, out: Path) -> Path:
    """A WordLevel fast tokenizer of ``vocab_size`` ids (w4, w5, ...) with RoBERTa's special ids, saved to ``out``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, vocab_size - 1)},
             "<mask>": vocab_size - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(out)
    return out


def make_corpus(out: Path, lines: int, vocab_size: int, seed: int, mu: float = 3.4) -> Path:
    """Lines of w<id> words, lengths log-normal around e**mu (by default median ~30 words, a long tail past a block)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    lengths = np.clip(rng.lognormal(mu, 0.9, size=lines).astype(int), 1, int(np.exp(mu) * 50))
    ids = rng.zipf(1.3, size=int(lengths.sum())) % (vocab_size - 5) + 4  # a few words common, most rare
    text, k = [], 0
    for n in lengths:
        text.append(" ".join(f"w{i}" for i in ids[k : k + n]))
        k += n
    for s in range(4):
        (out / f"part{s}.txt").write_text("\n".join(text[s::4]) + "\n")
    return out


def preprocess(tok: Path, text: Path, cache: Path, seq_len: int) -> None:
    from preprocess.__main__ import main

    rc = main(["--tokenizer_name_or_path", str(tok), "--train_dir", str(text), "--datasets_cache_dir", str(cache),
               "--max_seq_length", str(seq_len)])
    if rc != 0:
        raise SystemExit("preprocessing the bench corpus failed")


def make_timer(warmup: int) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        t_warm = t_end = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                self.t_warm = time.perf_counter()
            if state.global_step == state.max_steps:
                self.t_end = time.perf_counter()

    return StepTimer()


def run_ours(a: argparse.Namespace, tok: Path, cache: Path, out: Path) -> float:
    """Seconds per step of mlm-train as its command line sets it up."""
    from train.config import parse
    from train.run import train

    parsed = parse(["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache),
                    "--max_seq_length", str(a.seq_len), "--architecture", a.architecture, "--output_dir", str(out),
                    "--max_steps", str(a.steps), "--per_device_train_batch_size", str(a.batch_size),
                    "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--seed", str(a.seed),
                    "--input_check", "off"],
                   "mlm-train")
    timer = make_timer(a.warmup)
    train(parsed.cache, parsed.model, parsed.mlm, parsed.training, callbacks=[timer])
    return (timer.t_end - timer.t_warm) / (a.steps - a.warmup)


def plain_trainer(architecture: str, tok_dir: Path | str, cache: Path | str, seq_len: int, seed: int,
                  training: dict[str, Any], callbacks: list[Any], attn_implementation: str | None = None) -> Any:
    """A Trainer as a plain transformers user builds it, over our dataset: the model (RobertaForMaskedLM for
    roberta-*) as from_config makes it (the tokenizer's vocabulary and special ids; seeded as mlm-train seeds its
    model, so both start from the same weights; ``attn_implementation`` if given, else transformers' default),
    DataCollatorForLanguageModeling, random batches."""
    from transformers import (
        AutoConfig,
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from common.manifest import SpecialIds
    from train.dataset import MemmapConcatFullSentenceTextDataset
    from train.model import fit_to_tokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = AutoConfig.from_pretrained(REPO / "train" / "configs" / f"{architecture}.json")
    # every special id the config carries (ModernBERT's cls/sep too), as a user sets them for a new tokenizer
    fit_to_tokenizer(config, len(tok), SpecialIds(tok.bos_token_id, tok.eos_token_id, tok.pad_token_id,
                                                  tok.unk_token_id, tok.mask_token_id), fresh=True)
    set_seed(seed)
    attn = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForMaskedLM.from_config(config, **attn)
    data = MemmapConcatFullSentenceTextDataset(Path(cache) / "train", seq_len)
    return Trainer(model=model, args=TrainingArguments(**training), train_dataset=data,
                   data_collator=DataCollatorForLanguageModeling(tok), processing_class=tok, callbacks=callbacks)


def run_plain(a: argparse.Namespace, tok_dir: Path, cache: Path, out: Path) -> float:
    """Seconds per step of the plain transformers setup on the same cache."""
    timer = make_timer(a.warmup)
    plain_trainer(a.architecture, tok_dir, cache, a.seq_len, a.seed,
                  {"output_dir": str(out), "max_steps": a.steps, "per_device_train_batch_size": a.batch_size,
                   "save_strategy": "no", "report_to": "none", "disable_tqdm": True, "seed": a.seed, "use_cpu": True,
                   "dataloader_pin_memory": False}, [timer]).train()
    return (timer.t_end - timer.t_warm) / (a.steps - a.warmup)


def fastest_steps(a: argparse.Namespace, tok: Path, cache: Path, work: Path, tag: str) -> dict[str, float]:
    """Seconds per step of mlm-train and of the plain recipe, alternating, the fastest run of each."""
    best: dict[str, float] = {}
    for rep in range(a.repeats):
        for name in (("ours", "plain") if rep % 2 == 0 else ("plain", "ours")):
            run = run_ours if name == "ours" else run_plain
            step_s = run(a, tok, cache, work / f"out_{tag}_{name}_{rep}")
            best[name] = min(best.get(name, float("inf")), step_s)
            log(f"{tag} {name}: {step_s * 1e3:.1f} ms/step")
    return best


def head_batches(a: argparse.Namespace, cache: Path) -> list[dict[str, torch.Tensor]]:
    """``--head_steps`` batches of ``--head_batch`` random 512-id blocks, masked by our collator (with head_positions)."""
    from transformers import AutoTokenizer

    from train.collator import TRAIN_STREAM, MlmCollator
    from train.dataset import MemmapConcatFullSentenceTextDataset

    tok = AutoTokenizer.from_pretrained(make_tokenizer(a.head_vocab, Path(tempfile.mkdtemp()) / "tok"))
    data = MemmapConcatFullSentenceTextDataset(cache / "train", a.head_seq_len)
    coll = MlmCollator(tok, [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id], tok.pad_token_id,
                       max_width=a.head_seq_len, seed=a.seed, head_positions=True)
    order = np.random.default_rng(a.seed).permutation(len(data))
    return [coll([(TRAIN_STREAM, int(i), data[int(i)]) for i in order[k * a.head_batch : (k + 1) * a.head_batch]])
            for k in range(a.head_steps)]


def head_loss(model: Any, variant: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss of one batch by one prediction head of ``model`` (which has the masked-positions forward in place):
    ``masked_only`` ours at the collator's head_positions; ``dense`` the class's own forward on every position;
    ``sparse_prediction`` ModernBERT's own (the class's forward with its config option on: the labelled rows found
    by a boolean index)."""
    if variant == "masked_only":
        return model(**batch).loss
    model.sparse_prediction = variant == "sparse_prediction"  # read by ModernBertForMaskedLM.forward
    return type(model).forward(model, **{k: v for k, v in batch.items() if k != "head_positions"}).loss


def head_step_times(a: argparse.Namespace, batches: list[dict[str, torch.Tensor]], architecture: str
                    ) -> dict[str, float]:
    """Median seconds per optimizer step at 512 ids of each head variant the architecture has, same masked batches.

    One model and optimizer, the variants interleaved step by step in a rotating order: a step costs the same
    whatever the weights, and on a shared machine a load that comes and goes then falls on every variant alike
    (whole runs one after the other gave 4x for ModernBERT where the head alone explains 1.3x)."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    from common.manifest import SpecialIds
    from train.model import fit_to_tokenizer, head_at_masked_positions_only

    config = AutoConfig.from_pretrained(REPO / "train" / "configs" / f"{architecture}.json")
    fit_to_tokenizer(config, a.head_vocab, SpecialIds(0, 2, 1, 3, a.head_vocab - 1), fresh=True)  # make_tokenizer's
    variants = ["dense", "masked_only"] + (["sparse_prediction"] if hasattr(config, "sparse_prediction") else [])
    torch.manual_seed(a.seed)
    model = AutoModelForMaskedLM.from_config(config)
    head_at_masked_positions_only(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for step, b in enumerate(batches * a.repeats):
        first = step % len(variants)
        for v in variants[first:] + variants[:first]:
            t = time.perf_counter()
            head_loss(model, v, b).backward()
            opt.step()
            opt.zero_grad()
            if step >= 1:  # each variant's first step allocates
                times[v].append(time.perf_counter() - t)
    best = {v: float(np.median(ts)) for v, ts in times.items()}
    log(f"head {architecture}: " + ", ".join(f"{v} {s:.2f} s/step" for v, s in best.items()))
    return best


def head_rows(a: argparse.Namespace, batches: list[dict[str, torch.Tensor]], architecture: str,
              target: float | None) -> list[tuple]:
    """Table rows: masked-only vs dense (and vs ModernBERT's sparse_prediction) for one architecture."""
    head = head_step_times(a, batches, architecture)
    shape = f"{architecture}, vocab {a.head_vocab:,}, batch {a.head_batch}"
    rows = [(f"s/step at {a.head_seq_len} ids, masked-only head vs dense head ({shape})",
             f"{head['masked_only']:.2f}", f"{head['dense']:.2f}", head["dense"] / head["masked_only"], target)]
    if "sparse_prediction" in head:
        rows.append((f"s/step at {a.head_seq_len} ids, masked-only head vs the model's own sparse_prediction "
                     f"({shape}; sparse_prediction waits for the GPU in every step, ours does not)",
                     f"{head['masked_only']:.2f}", f"{head['sparse_prediction']:.2f}",
                     head["sparse_prediction"] / head["masked_only"], None))
    return rows


def architecture_rows(a: argparse.Namespace, cache512: Path) -> list[tuple]:
    batches = head_batches(a, cache512)
    return [row for arch in a.head_architectures.split(",") if arch for row in head_rows(a, batches, arch, None)]


def print_table(rows: list[tuple], a: argparse.Namespace, argv: list[str] | None, out: Path) -> None:
    table = ["| measurement | ours | baseline | ratio | target |", "|---|---|---|---|---|"]
    for what, ours, base, ratio, target in rows:
        ratio_s = f"**{ratio:.2f}x**" if ratio is not None else ""
        target_s = f">= {target}x {'met' if ratio >= target else 'MISSED'}" if target is not None else ""
        table.append(f"| {what} | {ours} | {base} | {ratio_s} | {target_s} |")
    table.append("")
    table.append(f"- command: `python bench/train_cpu.py {shlex.join(sys.argv[1:] if argv is None else argv)}`; "
                 f"{os.cpu_count()} CPU cores, torch {torch.__version__}; whole runs: the fastest of {a.repeats} alternating; "
                 "head rows (s/step at ...): the median step, the variants interleaved step by step on one model")
    text_out = "\n".join(table)
    print(text_out)
    (out / "train_cpu.md").write_text(text_out + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--architecture", default="roberta-base")
    p.add_argument("--vocab_size", type=int, default=30_522)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--lines", type=int, default=12_000, help="corpus lines")
    p.add_argument("--head_vocab", type=int, default=50_265)
    p.add_argument("--head_seq_len", type=int, default=512)
    p.add_argument("--head_batch", type=int, default=4)
    p.add_argument("--head_steps", type=int, default=4)
    p.add_argument("--host_seq_len", type=int, default=128)
    p.add_argument("--host_vocab", type=int, default=1000)
    p.add_argument("--only_host", action="store_true", help="the host-cost row alone")
    p.add_argument("--host_batch", type=int, default=16)
    p.add_argument("--host_steps", type=int, default=60)
    p.add_argument("--host_warmup", type=int, default=10)
    p.add_argument("--head_architectures", default="modernbert-base",
                   help="comma-separated shipped configs whose heads row 3 also measures")
    p.add_argument("--only_architectures", action="store_true", help="the --head_architectures rows alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_out/train_cpu")
    p.add_argument("--smoke", action="store_true", help="roberta-tiny, tiny sizes: proves the script only")
    a = p.parse_args(argv)
    if a.smoke:
        a.architecture, a.vocab_size, a.seq_len, a.batch_size, a.steps, a.warmup, a.repeats = (
            "roberta-tiny", 500, 64, 4, 4, 1, 1)
        a.lines, a.head_vocab, a.head_seq_len, a.head_batch, a.head_steps = 600, 500, 128, 2, 2
        a.host_seq_len, a.host_batch, a.host_steps, a.host_warmup, a.host_vocab = 64, 4, 4, 1, 500
        a.head_architectures = "modernbert-tiny"
    torch.set_num_threads(os.cpu_count() or 1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as work:
        work = Path(work)
        tok = make_tokenizer(a.vocab_size, work / "tok")
        text = make_corpus(work / "text", a.lines, min(a.vocab_size, a.head_vocab), a.seed)
        preprocess(tok, text, work / "cache512", a.head_seq_len)
        if a.only_architectures:
            print_table(architecture_rows(a, work / "cache512"), a, argv, out)
            return 0
        preprocess(tok, text, work / "cache", a.seq_len)
        log("corpus and caches ready")
        host_args = argparse.Namespace(**{**vars(a), "architecture": "roberta-tiny", "seq_len": a.host_seq_len,
                                          "batch_size": a.host_batch, "steps": a.host_steps, "warmup": a.host_warmup})
        host_tok = make_tokenizer(a.host_vocab, work / "host_tok")  # a small vocabulary: the model costs little
        host_text = make_corpus(work / "host_text", a.lines, a.host_vocab, a.seed)
        preprocess(host_tok, host_text, work / "cache_host", a.host_seq_len)
        host = fastest_steps(host_args, host_tok, work / "cache_host", work, "host")
        if a.only_host:
            print(f"| host cost: ms/step, mlm-train vs plain Trainer + DataCollatorForLanguageModeling (roberta-tiny, "
                  f"{a.host_seq_len} ids, vocab {a.host_vocab:,}, batch {a.host_batch}) | {host['ours'] * 1e3:.1f} | "
                  f"{host['plain'] * 1e3:.1f} | **{host['plain'] / host['ours']:.2f}x** | >= 1.0x |")
            return 0
        speed = fastest_steps(a, tok, work / "cache", work, "main")
        heads = head_rows(a, head_batches(a, work / "cache512"), a.architecture, 1.25)
        from train.dataset import MemmapConcatFullSentenceTextDataset
        from train.order import Corpus, DataOrder
        from train.sampling import pad_share

        lengths = MemmapConcatFullSentenceTextDataset(work / "cache512" / "train", a.head_seq_len).lengths()
        orders = {s: DataOrder([Corpus("train", lengths, 0)], [1.0], s, a.seed, a.batch_size).blocks(0, len(lengths))
                  for s in ("random", "group_by_length")}
        pad = {s: pad_share(lengths, order, a.batch_size, 64, a.head_seq_len) for s, order in orders.items()}
        more = architecture_rows(a, work / "cache512")
    rows = [
        ("train samples/s, mlm-train vs plain Trainer + DataCollatorForLanguageModeling "
         f"({a.architecture}, {a.seq_len} ids, vocab {a.vocab_size:,}, batch {a.batch_size})",
         f"{a.batch_size / speed['ours']:.2f}", f"{a.batch_size / speed['plain']:.2f}",
         speed["plain"] / speed["ours"], 1.25),
        ("host cost: ms/step, mlm-train vs plain Trainer + DataCollatorForLanguageModeling (roberta-tiny, "
         f"{a.host_seq_len} ids, vocab {a.host_vocab:,}, batch {a.host_batch}: the step is mostly data, masking and "
         "Trainer bookkeeping)",
         f"{host['ours'] * 1e3:.1f}", f"{host['plain'] * 1e3:.1f}", host["plain"] / host["ours"], 1.0),
        *heads,
        (f"pad share of the positions computed, random vs grouped batches of {a.batch_size}, widths a multiple "
         f"of 64 ({len(lengths):,} blocks of <= {a.head_seq_len}, mean {lengths.mean():.0f})",
         f"{pad['random']:.1%}", f"{pad['group_by_length']:.1%}", None, None),
        *more,
    ]
    print_table(rows, a, argv, out)
    log(f"done in {time.perf_counter() - T0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
