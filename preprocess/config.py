"""Arguments of the preprocess command, named as in the users' run_mlm.py."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from common.errors import UserError

DATASETS_TYPES = ("MemmapConcatFullSentenceTextDataset", "MemmapLineByLineTextDataset")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class PreprocessConfig:
    """Where the text is, how to tokenize it, and where the cache goes."""

    tokenizer_name_or_path: str = field(
        metadata={"help": "Local tokenizer directory (save_pretrained output) or tokenizer.json. Never downloaded."}
    )
    datasets_cache_dir: str = field(
        metadata={"help": "Cache directory; outputs go to <cache>/train and <cache>/validation."}
    )
    train_dir: str | None = field(
        default=None,
        metadata={"help": "Directory of training text shards: every *.<ext> file in it is used (required to preprocess)."},
    )
    eval_dir: str | None = field(
        default=None, metadata={"help": "Directory of validation text shards (optional)."}
    )
    tokenizer_type: str = field(
        default="auto",
        metadata={"help": "How to load the tokenizer: auto (a Hugging Face tokenizer dir or tokenizer.json), "
                  "spm|ThaiRobertaTokenizer, newmm|ThaiWordsNewmmTokenizer, syllable|ThaiWordsSyllableTokenizer, "
                  "fake_sefr_cut|FakeSefrCutTokenizer, or module.path:ClassName."},
    )
    ext: str = field(default="txt", metadata={"help": "Extension of the text shards, with or without the dot."})
    max_seq_length: int = field(
        default=512, metadata={"help": "Tokens per block including <s> and </s> (at least 3)."}
    )
    datasets_type: str = field(
        default="MemmapConcatFullSentenceTextDataset",
        metadata={"help": f"Dataset the training stage builds from the cache: one of {', '.join(DATASETS_TYPES)}."},
    )
    add_space_token: bool = field(
        default=False,
        metadata={"help": "Spaces become the space token '<_>' before encoding (it must be in the vocab)."},
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Ignore all cached work and rebuild every split."})
    verify_outputs: bool = field(
        default=False,
        metadata={"help": "Re-hash every cached array a rerun would reuse and rebuild the damaged ones. A plain "
                  "rerun checks the arrays' shapes and sizes only: an array altered in place at the same size "
                  "is found by this flag or by mlm-inspect verify."},
    )
    num_workers: int = field(
        default_factory=available_cores, metadata={"help": "Tokenizer processes; all cores by default."}
    )
    task_size_mb: float = field(
        default=4.0,
        metadata={"help": "Shards bigger than this are split into newline-aligned byte ranges of about this size "
                  "(MB); a worker's memory peaks at about 4x this, whatever the shard size."},
    )

    def __post_init__(self) -> None:
        self.ext = self.ext.lstrip("*").lstrip(".")  # txt, .txt and *.txt all mean *.txt
        if not self.ext:
            raise UserError("--ext is empty; give the shards' extension, e.g. --ext txt")
        if self.max_seq_length < 3:
            raise UserError(
                f"--max_seq_length {self.max_seq_length}: must be at least 3 (<s>, one token, </s>)"
            )
        if self.num_workers < 1:
            raise UserError(f"--num_workers {self.num_workers}: must be at least 1")
        if self.task_size_mb <= 0:
            raise UserError(f"--task_size_mb {self.task_size_mb}: must be positive")
        if self.datasets_type not in DATASETS_TYPES:
            raise UserError(f"--datasets_type {self.datasets_type!r}: must be one of {', '.join(DATASETS_TYPES)}")

    @property
    def task_bytes(self) -> int:
        return max(1, int(self.task_size_mb * (1 << 20)))

    def splits(self) -> list[tuple[str, str]]:
        """(split name, input dir) pairs to build, train first."""
        if not self.train_dir:
            raise UserError("--train_dir is required to preprocess: the directory of training text shards")
        out = [("train", self.train_dir)]
        if self.eval_dir:
            out.append(("validation", self.eval_dir))
        return out
