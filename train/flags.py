"""The train commands' flags, known without importing torch or transformers.

Importing transformers' ``TrainingArguments`` costs 2-3 s (torch with it), and
``HfArgumentParser`` over every class takes more: a typo or ``--help`` took
6 s. So ``precheck`` answers both from the dataclasses below and from the
field list of ``TrainingArguments`` read out of transformers' source with
``ast`` (30 ms, no import): ``--help`` lists our flags first, then the
Trainer's; an unknown flag or a bad number is one line, at once. The full
parse (train/config.py) still runs ``HfArgumentParser`` over the same classes,
so what is accepted is decided there; ``tests/train/test_flags.py`` fails
when the source read here stops matching the real class.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib.util
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cli import _base_type, _bool
from common.config import refuse_other_commands_flags
from common.errors import UserError

CONFIG_DIR = Path(__file__).parent / "configs"
ARCHITECTURES = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))

DESCRIPTION = """Train a masked language model (RoBERTa, BERT or ModernBERT) on a cache that mlm-preprocess built.
Never tokenizes text: it reads the cache's blocks with pread, mapping nothing (within any open-file
limit; a file cut under the job is one error line, not a SIGBUS), and checks, before any step, that the
cache matches the tokenizer, --max_seq_length and the text it was built from (--input_check). Every
flag of the transformers Trainer (TrainingArguments) is accepted too; they are listed last."""

DESCRIPTIONS = {
    "run_mlm.py": """The users' run_mlm.py command line: bring the cache up to date from --train_dir/--eval_dir
(as mlm-preprocess does, incrementally), then train on it (as mlm-train does);
--build_dataset_only stops after preprocessing. Every flag of the transformers Trainer
(TrainingArguments) is accepted too; they are listed last.""",
}


@dataclass
class ModelArguments:
    """The model: a shipped config, a config of one's own, or a checkpoint to start from."""

    architecture: str = field(
        default="roberta-base", metadata={"help": f"Shipped model config: {', '.join(ARCHITECTURES)} "
                                          "(docs/models.md). Vocabulary and special ids come from the tokenizer."}
    )
    config_name: str | None = field(default=None, metadata={"help": "A config.json of one's own (overrides --architecture)."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Local checkpoint to start from instead of random weights."}
    )

    def __post_init__(self) -> None:
        if self.config_name and self.model_name_or_path:  # from_pretrained would read the model's own config.json
            raise UserError(f"--config_name {self.config_name} with --model_name_or_path {self.model_name_or_path}: "
                            "a pretrained model keeps its own config.json; drop --config_name (or start a fresh "
                            "model from the config without --model_name_or_path)")


@dataclass
class MlmArguments:
    """Masking and evaluation."""

    mlm_probability: float = field(
        default=0.15,
        metadata={"help": "Share of each block's tokens masked (bos, eos and padding never are): in training, and "
                  "always in evaluation, so eval losses compare across steps and across runs with other "
                  "schedules. docs/masking.md."},
    )
    mlm_probability_schedule: str | None = field(
        default=None,
        metadata={"help": "START:END, e.g. 0.3:0.15: the training masking rate goes linearly from START at the "
                  "first optimizer step to END at the last (--max_steps, or the steps the epochs make), in place "
                  "of --mlm_probability; a sample's rate follows from its place in the run, so it is the same on "
                  "any number of processes and after a resume. Evaluation masks at --mlm_probability."},
    )
    whole_word_mask: bool = field(
        default=False,
        metadata={"help": "Mask whole words: --mlm_probability of each block's words (not pieces) are chosen and "
                  "every piece of each is masked. Word starts come from the tokenizer's own marks (SentencePiece "
                  "▁, byte-level BPE Ġ, WordPiece ##; newmm and syllable tokens are words); a tokenizer "
                  "without such marks is refused. Training only: evaluation masks pieces, so its losses compare "
                  "with runs without it."},
    )
    mixture: str | None = field(
        default=None,
        metadata={"help": "Weights of the cache's named corpora (preprocessed with --train_dir NAME=DIR), e.g. "
                  "wiki=0.2,news=0.5,social=0.3: normalised; a corpus left out is not trained on. Without it (and "
                  "without --mixture_alpha) each corpus weighs its size. Changing it never touches the cache."},
    )
    mixture_alpha: float | None = field(
        default=None,
        metadata={"help": "XLM-R's size smoothing instead of --mixture: corpus i weighs (its share of the blocks) "
                  "** alpha; 1 is by size, 0 all alike, 0.3 upsamples small corpora as XLM-R did."},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N validation blocks only (the same ones every time)."}
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.mlm_probability < 1.0:
            raise UserError(f"--mlm_probability {self.mlm_probability}: must be between 0 and 1")
        self.schedule_rates()  # refused here, before anything is loaded
        if self.max_eval_samples is not None and self.max_eval_samples < 1:
            raise UserError(f"--max_eval_samples {self.max_eval_samples}: must be at least 1")
        if self.mixture and self.mixture_alpha is not None:
            raise UserError("--mixture and --mixture_alpha both given: weights or a smoothing, not both")
        if self.mixture_alpha is not None and not 0.0 <= self.mixture_alpha <= 1.0:
            raise UserError(f"--mixture_alpha {self.mixture_alpha}: must be between 0 and 1 (XLM-R: 0.3)")

    def schedule_rates(self) -> tuple[float, float] | None:
        """(START, END) of --mlm_probability_schedule, or None; UserError saying what is wrong with it."""
        text = self.mlm_probability_schedule
        if text is None:
            return None
        parts = text.split(":")
        try:
            start, end = (float(x) for x in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            start = end = None
        if start is None or end is None:
            raise UserError(f"--mlm_probability_schedule {text!r}: not START:END; give two rates, e.g. 0.3:0.15 "
                            "(30% of the tokens masked at the first step, 15% at the last)")
        for rate in (start, end):
            if not 0.0 < rate <= 1.0:
                raise UserError(f"--mlm_probability_schedule {text}: {rate} is outside (0, 1]; each rate is the "
                                "share of a block's tokens masked, e.g. 0.3:0.15")
        return start, end

    def masking(self, steps: int) -> dict[str, Any]:
        """The masking settings a run records (train/provenance.py): a resume that changes them says so."""
        rates = self.schedule_rates()
        schedule = {"start": rates[0], "end": rates[1], "steps": steps} if rates else None
        return {"mlm_probability": self.mlm_probability, "schedule": schedule, "whole_word_mask": self.whole_word_mask}


INPUT_CHECKS = ("stat", "hash", "off")
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*|multilingual")  # ISO 639 (-region/-script)
LICENSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass
class RunArguments:
    """How this run treats what is already on disk: the cache's text, and --output_dir."""

    input_check: str = field(
        default="stat",
        metadata={"help": "Compare the cache with the text dirs its manifest records (or --train_dir/--eval_dir) "
                  "before training, and refuse a stale cache. stat: a file whose size and mtime are those recorded "
                  "when it was hashed is taken as unchanged, any other is hashed; hash: hash every file; off: no "
                  "check. Where the text is not reachable (a GPU node without it mounted) a note says the check "
                  "was skipped."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train from scratch into an --output_dir that holds a finished model or checkpoints: "
                  "its checkpoint-* dirs are deleted first. Without it such a dir is refused (or resumed, with "
                  "--resume_from_checkpoint)."},
    )

    save_on_signal: bool = field(
        default=True,
        metadata={"help": "On SIGTERM or SIGUSR1 (Slurm's notice before a preemption or time limit: sbatch "
                  "--signal=USR1@120), finish the optimizer step, save a checkpoint and exit 128 + the signal "
                  "(143 for SIGTERM); a second signal exits at once. Ctrl-C, too, stops at the end of the step, "
                  "without saving (twice: at once). --save_on_signal false: exit at once."},
    )
    peak_tflops: float | None = field(
        default=None,
        metadata={"help": "The device's peak dense TFLOP/s in this run's precision (bf16/fp16, tf32 or fp32), "
                  "which the mfu logged at every logging step is a percent of (model FLOPs/s per device / peak). "
                  "Without it the peak comes from a table of common GPUs matched on the device's name "
                  "(docs/long-runs.md); on the CPU or a GPU not in the table mfu is not logged."},
    )
    allow_data_change: bool = field(
        default=False,
        metadata={"help": "Resume from a checkpoint although the cache now holds other data than it was trained "
                  "on (shards added, changed, removed; other packing): refused without it. The model's "
                  "provenance.json then lists both and the step the data changed at."},
    )
    language: list[str] | None = field(
        default=None,
        metadata={"help": "The language(s) of the training text, for the model card's `language:` (README.md in "
                  "--output_dir, read by the Hugging Face hub): ISO 639 codes, e.g. --language th en (or th,en)."},
    )
    license: str | None = field(
        default=None,
        metadata={"help": "The model's license, for the model card's `license:` (a hub license id, e.g. "
                  "apache-2.0, cc-by-sa-4.0, other). Without it the card names none."},
    )

    def __post_init__(self) -> None:
        if self.input_check not in INPUT_CHECKS:
            raise UserError(f"--input_check {self.input_check!r}: one of {', '.join(INPUT_CHECKS)}")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise UserError(f"--peak_tflops {self.peak_tflops}: must be above 0 (the GPU's dense TFLOP/s, e.g. 989 "
                            "for an H100 SXM in bf16)")
        if self.language is not None:  # --language th en, --language th,en, or a JSON list
            given = [self.language] if isinstance(self.language, str) else self.language
            self.language = [c.strip() for v in given for c in str(v).split(",") if c.strip()]
            bad = [c for c in self.language if not LANGUAGE_CODE.fullmatch(c)]
            if bad or not self.language:
                raise UserError(f"--language {' '.join(map(str, given))}: {bad[0] if bad else 'no code'} is not a "
                                "language code; give ISO 639 codes (th, en, tha), space- or comma-separated")
        if self.license is not None and not LICENSE_ID.fullmatch(self.license):
            raise UserError(f"--license {self.license!r}: a license id is one word (apache-2.0, mit, cc-by-4.0, "
                            "other), as the Hugging Face hub lists them")


@dataclass
class LegacyArguments:
    """Old flags: accepted, mapped onto today's by ``translate_legacy``, never read after."""

    evaluation_strategy: str | None = field(default=None, metadata={"help": "Old name of --eval_strategy."})
    model_dir: str | None = field(
        default=None, metadata={"help": "Old name: resume from this checkpoint (now --resume_from_checkpoint)."}
    )
    logging_dir: str | None = field(
        default=None, metadata={"help": "TensorBoard log dir; turns tensorboard reporting on."}
    )
    mlm: bool = field(default=False, metadata={"help": "Old examples' flag: this tool always trains a masked LM."})
    no_cuda: bool = field(default=False, metadata={"help": "Old name of --use_cpu."})


LEGACY_KEYS = tuple(f.name for f in dataclasses.fields(LegacyArguments))
OWN_CLASSES = (ModelArguments, MlmArguments, RunArguments)

# Trainer flags whose help we word ourselves (what they mean in this tool).
HELP_OVERRIDES = {
    "resume_from_checkpoint": "Continue a run: a checkpoint-<step> dir, or latest (also the flag with no value): "
                              "the newest checkpoint in --output_dir.",
}


@dataclass(frozen=True)
class TrainerField:
    name: str
    kind: Any  # bool, int, float, str, or list (a list of strings)
    help: str


def _kind(annotation: ast.expr | None) -> Any:
    text = ast.unparse(annotation) if annotation is not None else "str"
    parts = {p.strip() for p in text.split("|")} - {"None"}
    if parts == {"bool"}:
        return bool
    if parts in ({"int"}, {"float"}):
        return {"int": int, "float": float}[parts.pop()]
    if any(p.startswith("list[") for p in parts):
        return list
    return str  # enums, dicts as JSON, unions: the full parse converts and checks them


@functools.cache
def trainer_fields() -> tuple[TrainerField, ...]:
    """The fields of transformers' TrainingArguments, read from its source (no import); () if not found."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        return ()
    source = Path(spec.origin).parent / "training_args.py"
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ()
    out = []
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name == "TrainingArguments"):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            if ast.unparse(stmt.annotation).startswith("ClassVar"):
                continue
            out.append(TrainerField(stmt.target.id, _kind(stmt.annotation), _help_of(stmt.value)))
    return tuple(out)


def _help_of(value: ast.expr | None) -> str:
    """The ``metadata={"help": ...}`` string of a ``field(...)`` call, when it is a literal."""
    if not isinstance(value, ast.Call):
        return ""
    for kw in value.keywords:
        if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
            for k, v in zip(kw.value.keys, kw.value.values):
                if isinstance(k, ast.Constant) and k.value == "help":
                    try:
                        return " ".join(str(ast.literal_eval(v)).split())
                    except ValueError:
                        return ""
    return ""


def _add_dataclass(group: argparse._ArgumentGroup, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = _base_type(hints[f.name])
        default = None if f.default is dataclasses.MISSING else f.default
        text = f.metadata.get("help", "") + (f" (default: {default})" if default not in (None, False) else "")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if kind is bool:
            group.add_argument(f"--{f.name}", type=_bool, nargs="?", const=True, help=text)
        else:
            group.add_argument(f"--{f.name}", type=kind, help=text + (" (required)" if required else ""))


class _FastParser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UserError(f"{message}; see {self.prog} --help")


def fast_parser(prog: str, own: tuple[type, ...]) -> argparse.ArgumentParser:
    """Every flag of the command: ``own`` classes' groups first, then the Trainer's, then the old names."""
    parser = _FastParser(prog=prog, description=DESCRIPTIONS.get(prog, DESCRIPTION), allow_abbrev=False, add_help=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter, usage=f"{prog} [FLAGS] | {prog} CONFIG.json")
    parser.add_argument("-h", "--help", action="store_true", help="Show this help and exit.")
    for cls in own:
        title = (cls.__doc__ or cls.__name__).split("\n")[0].rstrip(".")
        _add_dataclass(parser.add_argument_group(title), cls)
    group = parser.add_argument_group("Trainer flags (transformers TrainingArguments; the common ones: --output_dir, "
                                      "--max_steps, --per_device_train_batch_size, --learning_rate, --save_steps)")
    for f in trainer_fields():
        text = HELP_OVERRIDES.get(f.name, f.help)
        if f.kind is bool:
            group.add_argument(f"--{f.name}", type=_bool, nargs="?", const=True, help=text)
            group.add_argument(f"--no_{f.name}", action="store_true", help=argparse.SUPPRESS)
        elif f.kind is list:
            group.add_argument(f"--{f.name}", nargs="+", help=text)
        else:
            group.add_argument(f"--{f.name}", type=f.kind, nargs="?" if f.name in HELP_OVERRIDES else None, help=text)
    _add_dataclass(parser.add_argument_group("old flags, still accepted"), LegacyArguments)
    return parser


def _underscored(flag: str) -> str:
    """``--per-device-train-batch-size=3`` -> ``--per_device_train_batch_size=3``."""
    name, eq, value = flag[2:].partition("=")
    return f"--{name.replace('-', '_')}{eq}{value}"


def precheck(argv: list[str], prog: str, own: tuple[type, ...]) -> bool:
    """True when ``argv`` asks for help (printed here); UserError for an unknown flag or a value of the
    wrong type. Settles neither defaults nor cross-flag rules: the full parse does."""
    parser = fast_parser(prog, own)
    if not trainer_fields():  # transformers' source not where we look: the full parse decides alone
        return False
    if argv and argv[0].endswith(".json"):
        if len(argv) > 1:
            raise UserError(f"{argv[0]} is a config file, which replaces every flag: give it alone (put "
                            f"{' '.join(argv[1:])} into it as keys), or give flags only")
        return False  # a config file: the full parse checks its keys
    # --per-device-train-batch-size: HfArgumentParser takes the dashed spelling of every flag too
    argv = [_underscored(a) if a.startswith("--") else a for a in argv]
    namespace, unknown = parser.parse_known_args(argv)
    if namespace.help:
        parser.print_help()
        return True
    flags = [a for a in unknown if a.startswith("-")]
    refuse_other_commands_flags({a[2:].split("=", 1)[0] for a in flags}, prog)
    if flags:
        raise UserError(f"unrecognized arguments: {' '.join(flags)}; see {prog} --help")
    missing = [f"--{f.name}" for cls in own for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and getattr(namespace, f.name, None) is None]
    if missing:
        raise UserError(f"the following arguments are required: {', '.join(missing)}; see {prog} --help")
    return False
