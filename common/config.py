"""The arguments both stages share, named as in the users' run_mlm.py: one definition of what a cache is for.

``mlm-preprocess`` adds how to build it (preprocess/config.py), ``mlm-train``
how to train on it (train/config.py); ``run_mlm.py`` takes both sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from common.corpora import parse_named
from common.errors import UserError

MAX_SEQ_LENGTH_LIMIT = 1 << 20  # far past any position table; keeps block arithmetic far from int64 limits
DATASETS_TYPES = ("MemmapConcatFullSentenceTextDataset", "MemmapLineByLineTextDataset")

# Flags that only one command acts on, and that command: another command refuses them by name
# rather than accepting and ignoring them (tests/common/test_config.py keeps this table true).
FLAG_OWNERS = {
    "num_workers": "mlm-preprocess",
    "task_size_mb": "mlm-preprocess",
    "overwrite_cache": "mlm-preprocess",
    "verify_outputs": "mlm-preprocess",
    "text_column": "mlm-preprocess",
    "strict": "mlm-preprocess",
    "validation_split_percentage": "mlm-preprocess",
    "validation_split_seed": "mlm-preprocess",
    "num_slices": "mlm-preprocess",
    "slice": "mlm-preprocess",
    "executor": "mlm-preprocess",
    "ray_address": "mlm-preprocess",
    "build_dataset_only": "run_mlm.py",
    "input_check": "mlm-train",  # run_mlm.py brings the cache up to date itself: nothing to check
}


@dataclass
class CacheArguments:
    """Where the text is, how it is tokenized, and where the cache goes."""

    tokenizer_name_or_path: str = field(
        metadata={"help": "Local tokenizer directory (save_pretrained output) or tokenizer.json. Never downloaded."}
    )
    datasets_cache_dir: str = field(
        metadata={"help": "Cache directory: <cache>/train and <cache>/validation, or with named corpora "
                  "<cache>/corpora/<name>/{train,validation} and <cache>/corpora.json (docs/format.md)."}
    )
    train_dir: str | None = field(
        default=None,
        metadata={"help": "Directory of training shards: every *.<ext> file in it is read (mlm-preprocess needs it; "
                  "mlm-train compares the cache with it, else with the dirs the manifests record). "
                  "Several dirs: comma-separated, or the flag repeated; shards are then named by their path under "
                  "the dirs' common parent. Named corpora, each its own part of the cache, mixed by mlm-train "
                  "--mixture: NAME=DIR entries (wiki=data/wiki,news=data/news; NAME=a,b for several dirs)."},
    )
    eval_dir: str | None = field(
        default=None, metadata={"help": "Directory of validation shards (optional; several as for --train_dir; "
                                     "NAME=DIR for a named corpus)."}
    )
    tokenizer_type: str = field(
        default="auto",
        metadata={"help": "How to load the tokenizer: auto (a Hugging Face tokenizer dir or tokenizer.json), "
                  "spm|ThaiRobertaTokenizer, newmm|ThaiWordsNewmmTokenizer, syllable|ThaiWordsSyllableTokenizer, "
                  "fake_sefr_cut|FakeSefrCutTokenizer, or module.path:ClassName."},
    )
    ext: str = field(
        default="txt",
        metadata={"help": "Extension of the shards, with or without the dot; it names their format: txt (or any "
                  "other: text), txt.gz, txt.zst, jsonl, jsonl.gz, jsonl.zst (also json, ndjson), parquet. "
                  "Several, comma-separated (txt,jsonl.zst,parquet): every file with any of them is read, each "
                  "by its own extension's reader (the longest listed one its name ends with)."},
    )
    recursive: bool = field(
        default=False,
        metadata={"help": "Read *.<ext> files in the subdirectories of --train_dir/--eval_dir too (links to dirs "
                  "are not followed); the manifest names them by their path under the dir."},
    )
    max_seq_length: int = field(
        default=512, metadata={"help": "Tokens per block including <s> and </s> (at least 3)."}
    )
    datasets_type: str = field(
        default="MemmapConcatFullSentenceTextDataset",
        metadata={"help": f"Dataset the training stage builds from the cache: one of {', '.join(DATASETS_TYPES)} "
                  "(the users' names: both read blocks by pread and map nothing)."},
    )
    add_space_token: bool = field(
        default=False,
        metadata={"help": "Spaces become the space token '<_>' before encoding (it must be in the vocab)."},
    )

    def __post_init__(self) -> None:
        for flag in ("tokenizer_name_or_path", "datasets_cache_dir", "train_dir", "eval_dir"):
            try:
                (getattr(self, flag) or "").encode("utf-8")
            except UnicodeEncodeError:  # the manifest records paths, and JSON is UTF-8
                raise UserError(f"--{flag}: the path {os.fsencode(getattr(self, flag))!r} is not valid UTF-8; "
                                "rename it or reach it through a UTF-8 path (a symlink)") from None
        for flag in ("train_dir", "eval_dir"):  # corpus names first: a bad one is its rule, not a missing dir
            parse_named(getattr(self, flag), f"--{flag}")
        self.ext = normalise_ext(self.ext)
        if not self.ext:
            raise UserError("--ext is empty; give the shards' extension, e.g. --ext txt")
        if not 3 <= self.max_seq_length <= MAX_SEQ_LENGTH_LIMIT:
            raise UserError(f"--max_seq_length {self.max_seq_length}: must be at least 3 (<s>, one token, </s>) "
                            f"and at most {MAX_SEQ_LENGTH_LIMIT:,}")
        if self.datasets_type not in DATASETS_TYPES:
            raise UserError(f"--datasets_type {self.datasets_type!r}: must be one of {', '.join(DATASETS_TYPES)}")

    @property
    def tokenizer_settings(self) -> dict[str, bool]:
        """The settings that are part of the tokenizer's identity (and so of every cache key)."""
        return {"add_space_token": self.add_space_token}

    def splits(self) -> list[tuple[str, str]]:
        """(split name, input dir) pairs to build, train first."""
        if not self.train_dir:
            raise UserError("--train_dir is required to preprocess: the directory of training text shards")
        out = [("train", self.train_dir)]
        if self.eval_dir:
            out.append(("validation", self.eval_dir))
        return out


def normalise_ext(value: str) -> str:
    """An ``--ext`` value as the listing (common/check.py) and the manifest take it: ``txt``, ``.txt``
    and ``*.txt`` all mean ``txt``; several extensions, comma-separated, each so, sorted and once each
    (``parquet, .txt,parquet`` -> ``parquet,txt``), so the order they were given in changes no cache."""
    if "," not in value:
        return value.lstrip("*").lstrip(".")  # one extension: as every existing manifest records it
    return ",".join(sorted({e for x in value.split(",") if (e := x.strip().lstrip("*").lstrip("."))}))


WHAT_IT_DOES = {
    "mlm-preprocess": "it builds the cache",
    "run_mlm.py": "it preprocesses, then trains",
    "mlm-train": "run_mlm.py brings the cache up to date before it trains, so there is nothing to check",
}


def refuse_other_commands_flags(keys: set[str], command: str) -> None:
    """UserError naming the command that takes a flag ``command`` would otherwise ignore."""
    for key in sorted(keys):
        owner = FLAG_OWNERS.get(key)
        if owner is not None and owner != command and not (command == "run_mlm.py" and owner == "mlm-preprocess"):
            raise UserError(f"--{key} is a flag of {owner}, not of {command}; {WHAT_IT_DOES[owner]}")
