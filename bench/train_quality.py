#!/usr/bin/env python
"""Does the train stage's data order or masking cost model quality? Paired runs against the plain recipe.

* text: real English prose, on every machine with Python: the docstrings and
  comments of the Python standard library, one sentence-ish line each;
  files dealt to train and held-out shards by a hash of their path;
* tokenizer: a byte-level BPE of ``--vocab_size`` ids trained here on the
  training text; cache: our ``mlm-preprocess`` at ``--seq_len`` (64, the demo's);
* model: the demo's roberta-tiny, ``--steps`` steps of batch ``--batch_size``;
* variants, each trained once per seed (``--seeds`` pairs; the same seed
  gives the same initial weights to all three):

  a. ``plain``: ``Trainer`` + ``RobertaForMaskedLM`` + ``DataCollatorForLanguageModeling``
     over our ``MemmapConcatFullSentenceTextDataset``, random batches;
  b. ``grouped``: ``mlm-train --train_sampling_strategy group_by_length``
     (the default before this bench);
  c. ``default``: ``mlm-train`` as it is, no flag;

  and the masking recipe's rows (``--new_rows`` runs them alone, with ``c``
  as their baseline; not in the default run):

  d. ``schedule``: ``mlm-train --mlm_probability_schedule 0.3:0.15`` (30% of
     the tokens masked at the first step, 15% at the last), against ``c``'s
     fixed 15%;
  e. ``modernbert``: ``mlm-train --architecture modernbert-tiny`` against
     ``c``'s roberta-tiny, the same steps (the table names both parameter
     counts);

* score: every final model's loss on the same held-out blocks with the same
  masks (masked once, 15%, BERT's 80/10/10, by the plain collator from a
  fixed seed), with the dense head; the table gives each variant's mean and
  its paired difference to its baseline (``plain``; ``default`` for d and e)
  with a 95% t-interval over the seeds.
* with ``schedule`` run, a second table: how many rows the masked-positions
  head computes per masked position at 512 ids, on this corpus's blocks
  (no training): fixed 15%, the schedule with the head sized per eighth of
  the run (what the collator does) or by its highest rate, whole words
  (``--whole_word_mask``) with and without the schedule: the measure behind
  the head's sizing (docs/masking.md).

``--smoke`` runs every row in seconds: it proves the script, not quality.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import ast  # noqa: E402
import hashlib  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

T0 = time.perf_counter()
VARIANTS = ("plain", "grouped", "default", "schedule", "modernbert")
DEFAULT_VARIANTS = ("plain", "grouped", "default")
NEW_ROWS = ("default", "schedule", "modernbert")  # --new_rows: the masking recipe's rows and their baseline
BASELINE = {"grouped": "plain", "default": "plain", "schedule": "default", "modernbert": "default"}
SCHEDULE = "0.3:0.15"
FLAGS = {"grouped": ("--train_sampling_strategy", "group_by_length"), "default": (),
         "schedule": ("--mlm_probability_schedule", SCHEDULE), "modernbert": ()}
ARCHITECTURE = {"modernbert": "modernbert-tiny"}  # every other row: roberta-tiny
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def log(msg: str) -> None:
    print(f"[train_quality {time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def prose_lines(source: ast.AST) -> list[str]:
    """The docstrings of a module, one line per sentence-ish paragraph, code-looking lines dropped."""
    out = []
    for node in ast.walk(source):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            for para in (doc or "").split("\n\n"):
                line = " ".join(para.split())
                words = line.split()
                if len(words) >= 4 and sum(w.isalpha() for w in words) >= 0.6 * len(words):
                    out.append(line)
    return out


def make_text(out: Path, max_mb: float) -> tuple[Path, Path]:
    """Train and held-out shards of standard-library prose: files sorted, dealt by a hash of their name."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    train, held = out / "train", out / "eval"
    train.mkdir(parents=True)
    held.mkdir(parents=True)
    shards: dict[Path, list[str]] = {}
    size = 0
    for f in sorted(stdlib.rglob("*.py")):
        if "site-packages" in f.parts or "test" in f.parts or "tests" in f.parts:
            continue
        try:
            lines = prose_lines(ast.parse(f.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        h = int(hashlib.sha256(str(f.relative_to(stdlib)).encode()).hexdigest(), 16)
        dest = held / "part0.txt" if h % 10 == 0 else train / f"part{h % 4}.txt"
        shards.setdefault(dest, []).extend(lines)
        size += sum(len(x) + 1 for x in lines)
        if size > max_mb * 1e6:
            break
    for path, lines in shards.items():
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return train, held


def make_tokenizer(text: Path, vocab_size: int, out: Path) -> Path:
    """A byte-level BPE with RoBERTa's special tokens, trained on ``text``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([str(p) for p in sorted(text.glob("*.txt"))], trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(out)
    return out


def preprocess(tok: Path, train: Path, held: Path, cache: Path, seq_len: int) -> None:
    from preprocess.__main__ import main

    if main(["--tokenizer_name_or_path", str(tok), "--train_dir", str(train), "--eval_dir", str(held),
             "--datasets_cache_dir", str(cache), "--max_seq_length", str(seq_len)]) != 0:
        raise SystemExit("preprocessing the bench corpus failed")


def training(a: argparse.Namespace, out: Path, seed: int) -> dict[str, Any]:
    """The settings all three share: transformers' defaults but for these."""
    return {"output_dir": str(out), "max_steps": a.steps, "per_device_train_batch_size": a.batch_size,
            "learning_rate": a.lr, "warmup_steps": a.steps // 10, "weight_decay": 0.01, "save_strategy": "no",
            "report_to": "none", "disable_tqdm": True, "seed": seed, "logging_steps": a.steps}


def run_plain(a: argparse.Namespace, tok: Path, cache: Path, out: Path, seed: int) -> Any:
    from train_cpu import plain_trainer  # the plain recipe, as bench/train_cpu.py and bench/gpu_train.py run it

    trainer = plain_trainer("roberta-tiny", tok, cache, a.seq_len, seed,
                            {**training(a, out, seed), "use_cpu": True, "dataloader_pin_memory": False}, [])
    trainer.train()
    return trainer.model


def run_ours(a: argparse.Namespace, tok: Path, cache: Path, out: Path, seed: int, *flags: str,
             architecture: str = "roberta-tiny") -> Any:
    from train.config import parse
    from train.run import train

    t = training(a, out, seed)
    argv = ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length",
            str(a.seq_len), "--architecture", architecture, "--input_check", "off", "--eval_strategy", "no", *flags]
    for key in ("output_dir", "max_steps", "per_device_train_batch_size", "learning_rate", "warmup_steps",
                "weight_decay", "save_strategy", "report_to", "disable_tqdm", "seed", "logging_steps"):
        argv += [f"--{key}", str(t[key])]
    parsed = parse(argv, "mlm-train")
    _, trainer = train(parsed.cache, parsed.model, parsed.mlm, parsed.training, parsed.run)
    return trainer.model


def held_out_batches(a: argparse.Namespace, tok: Path, cache: Path) -> list[dict[str, torch.Tensor]]:
    """The held-out blocks, masked once from a fixed seed by the plain collator: the same for every model."""
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from train.dataset import MemmapConcatFullSentenceTextDataset

    data = MemmapConcatFullSentenceTextDataset(cache / "validation", a.seq_len)
    collator = DataCollatorForLanguageModeling(AutoTokenizer.from_pretrained(tok))
    torch.manual_seed(12345)
    n = min(len(data), a.eval_blocks)
    return [collator([data[i] for i in range(k, min(k + 64, n))]) for k in range(0, n, 64)]


def held_out_loss(model: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean cross-entropy over every masked held-out token, with the dense head (the class's own forward:
    RobertaForMaskedLM's, ModernBertForMaskedLM's)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            n = int((b["labels"] != -100).sum())
            total += float(type(model).forward(model, **b).loss) * n
            count += n
    return total / count


def head_table(a: argparse.Namespace, tok: Path, train_text: Path, held_text: Path, work: Path) -> list[str]:
    """Head rows per masked position at 512 ids on this corpus's blocks, one pass in random order, batches of 8
    and 32 (the schedule's run is that pass): the collator's own ``head_positions``, and for the schedule also
    ``head_rows`` at its highest rate (the other way to size it). No training."""
    from transformers import AutoTokenizer

    from train.collator import TRAIN_STREAM, MlmCollator, RateSchedule, head_rows
    from train.dataset import MemmapConcatFullSentenceTextDataset

    preprocess(tok, train_text, held_text, work / "cache512", 512)
    tokenizer = AutoTokenizer.from_pretrained(tok)
    data = MemmapConcatFullSentenceTextDataset(work / "cache512" / "train", 512)
    order = np.random.default_rng(0).permutation(len(data))
    start, end = (float(x) for x in SCHEDULE.split(":"))
    rows = ["| masking at 512 ids | batch | head rows per masked position | batches past the first head size "
            "| head sizes seen |", "|---|---|---|---|---|"]
    for batch in (8, 32):
        steps = len(order) // batch
        schedule = RateSchedule(start, end, steps, batch)
        cases = [("fixed 15%", {}, None), (f"schedule {SCHEDULE}, head per eighth of the run", {"schedule": schedule},
                                           None),
                 (f"schedule {SCHEDULE}, head by its highest rate", {"schedule": schedule}, max(start, end)),
                 ("whole words, 15%", {"whole_word_mask": True}, None),
                 (f"whole words, schedule {SCHEDULE}", {"whole_word_mask": True, "schedule": schedule}, None)]
        for name, kw, sized_by in cases:
            coll = MlmCollator(tokenizer, [tokenizer.bos_token_id, tokenizer.eos_token_id], tokenizer.pad_token_id,
                               0.15, max_width=512, seed=1, head_positions=True, **kw)
            computed = masked = past = 0
            sizes = set()
            for step in range(steps):
                b = coll([(TRAIN_STREAM, g, data[int(order[g])]) for g in range(step * batch, (step + 1) * batch)])
                shape, head = b["input_ids"].shape, len(b["head_positions"])
                room = float(coll.rates(np.array([TRAIN_STREAM]), np.array([step * batch]))[1][0])
                past += head > head_rows(*shape, room)  # whole words: a batch on the ladder's next rung
                n = head_rows(*shape, sized_by) if sized_by else head
                computed, masked = computed + n, masked + int((b["labels"] != -100).sum())
                sizes.add((shape[1], n))
            ladder = "" if sized_by else f"{past / steps:.1%}"
            rows.append(f"| {name} | {batch} | {computed / masked:.3f} | {ladder} | {len(sizes)} |")
    rows.append(f"- {len(order)} blocks of <= 512 ids from the same text and tokenizer; one pass, keys 0.. in a "
                "seeded random order")
    return rows


def interval(diffs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval."""
    d = np.asarray(diffs)
    if len(d) < 2:
        return float(d.mean()), float("nan")
    return float(d.mean()), T_975.get(len(d) - 1, 1.96) * float(d.std(ddof=1)) / np.sqrt(len(d))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seq_len", type=int, default=64)
    p.add_argument("--vocab_size", type=int, default=2000)
    p.add_argument("--text_mb", type=float, default=6.0)
    p.add_argument("--eval_blocks", type=int, default=4096)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS),
                   help="rows to run (a row's baseline is run with it); default: the first three")
    p.add_argument("--new_rows", action="store_true",
                   help=f"only the masking recipe's rows: {', '.join(NEW_ROWS[1:])} and their baseline, default")
    p.add_argument("--head_only", action="store_true",
                   help="only the head-size table (no training; a minute or two at the default --text_mb)")
    p.add_argument("--out", default="bench_out/train_quality")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: proves the script only")
    a = p.parse_args(argv)
    if a.new_rows:
        a.variants = list(NEW_ROWS)
    if a.smoke:
        a.seeds, a.steps, a.batch_size, a.vocab_size, a.text_mb, a.eval_blocks = 2, 4, 8, 500, 0.3, 128
        a.variants = list(VARIANTS)
    needed = {BASELINE[v] for v in a.variants if v in NEW_ROWS[1:]}  # d and e are read against c
    a.variants = [v for v in VARIANTS if v in set(a.variants) | needed]
    torch.set_num_threads(os.cpu_count() or 1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    losses: dict[str, list[float]] = {v: [] for v in a.variants}
    params: dict[str, int] = {}
    heads: list[str] = []
    with tempfile.TemporaryDirectory(dir=out) as work:
        work = Path(work)
        train_text, held_text = make_text(work / "text", a.text_mb)
        tok = make_tokenizer(train_text, a.vocab_size, work / "tok")
        preprocess(tok, train_text, held_text, work / "cache", a.seq_len)
        batches = held_out_batches(a, tok, work / "cache")
        log(f"corpus, tokenizer and cache ready; {sum(len(b['input_ids']) for b in batches)} held-out blocks")
        if a.head_only:
            text = "\n".join([*head_table(a, tok, train_text, held_text, work), f"- command: `python "
                              f"bench/train_quality.py {shlex.join(sys.argv[1:] if argv is None else argv)}`"])
            print(text)
            (out / "train_quality_head.md").write_text(text + "\n")
            return 0
        for seed in range(1, a.seeds + 1):
            for variant in a.variants:
                t = time.perf_counter()
                run_dir = work / f"{variant}_{seed}"
                if variant == "plain":
                    model = run_plain(a, tok, work / "cache", run_dir, seed)
                else:
                    model = run_ours(a, tok, work / "cache", run_dir, seed, *FLAGS[variant],
                                     architecture=ARCHITECTURE.get(variant, "roberta-tiny"))
                params[variant] = model.num_parameters()
                losses[variant].append(held_out_loss(model, batches))
                log(f"seed {seed} {variant}: held-out loss {losses[variant][-1]:.4f} ({time.perf_counter() - t:.0f} s)")
        if "schedule" in a.variants:
            heads = head_table(a, tok, train_text, held_text, work)
    names = {"plain": "a. plain transformers recipe (DataCollatorForLanguageModeling, random batches)",
             "grouped": "b. mlm-train --train_sampling_strategy group_by_length",
             "default": "c. mlm-train defaults (random batches, fixed-count masks, widths of 64)",
             "schedule": f"d. mlm-train --mlm_probability_schedule {SCHEDULE} (vs c: a fixed 15%)",
             "modernbert": f"e. mlm-train --architecture modernbert-tiny, {params.get('modernbert', 0):,} parameters "
                           f"(vs c: roberta-tiny, {params.get('default', 0):,})"}
    table = ["| variant | held-out loss, mean of seeds | paired difference to its baseline ((a); (c) for d and e), "
             "mean ± 95% interval | within noise |", "|---|---|---|---|"]
    for v in a.variants:
        mean = float(np.mean(losses[v]))
        base = BASELINE.get(v)
        if base not in losses:
            table.append(f"| {names[v]} | {mean:.4f} | | |")
            continue
        d, half = interval([x - y for x, y in zip(losses[v], losses[base])])
        table.append(f"| {names[v]} | {mean:.4f} | {d:+.4f} ± {half:.4f} | "
                     f"{'yes' if abs(d) <= half else 'no: ' + ('worse' if d > 0 else 'better')} |")
    table.append("")
    table.append("- per seed: " + "; ".join(f"{v} " + ", ".join(f"{x:.4f}" for x in losses[v]) for v in a.variants))
    table.append(f"- command: `python bench/train_quality.py {shlex.join(sys.argv[1:] if argv is None else argv)}`; "
                 f"roberta-tiny, {a.seq_len} ids, {a.steps} steps of {a.batch_size}, lr {a.lr}, {a.seeds} seeds; "
                 f"{os.cpu_count()} CPU cores, torch {torch.__version__}; {time.perf_counter() - T0:.0f} s")
    if heads:
        table += ["", *heads]
    text = "\n".join(table)
    print(text)
    (out / "train_quality.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
