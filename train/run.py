"""Wire the checked cache, the model and the collator into the Trainer; train, evaluate, save."""

from __future__ import annotations

import math
import shlex
import shutil
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments

from common.errors import UserError
from common.format import MANIFEST_NAME, FormatError
from common.manifest import Manifest, load_manifest
from common.tokenizer import LoadedTokenizer, TokenizerError, load_tokenizer
from preprocess import inspect_cache
from preprocess.config import PreprocessConfig
from train.collator import MlmCollator
from train.config import MlmArguments, ModelArguments
from train.dataset import DATASET_TYPES
from train.model import ModelError, build_model


def fix_command(cfg: PreprocessConfig, manifest: Manifest | None) -> str:
    """The make preprocess line that rebuilds this cache for these settings."""
    train_dir = cfg.train_dir or (manifest.input_dir if manifest else "<dir of your .txt shards>")
    parts = ["make", "preprocess", f"TRAIN_DIR={train_dir}", f"TOKENIZER={cfg.tokenizer_name_or_path}",
             f"TOKENIZER_TYPE={cfg.tokenizer_type}", f"CACHE_DIR={cfg.datasets_cache_dir}",
             f"MAX_SEQ_LENGTH={cfg.max_seq_length}"]
    if cfg.eval_dir:
        parts.insert(3, f"EVAL_DIR={cfg.eval_dir}")
    if cfg.add_space_token:
        parts.append("ARGS=--add_space_token")
    return shlex.join(parts)


def check_split(cfg: PreprocessConfig, split: str, loaded: LoadedTokenizer, input_dir: str | None = None):
    """The split's dataset, or UserError saying what differs and the command that fixes it.

    With ``input_dir`` the cache is also checked against the text (hashing it);
    without, only against the tokenizer, ``--max_seq_length`` and file sizes.
    """
    split_dir = Path(cfg.datasets_cache_dir) / split
    manifest = None
    try:
        manifest = load_manifest(split_dir)
        if manifest.tokenizer.get("digest") != loaded.identity["digest"]:
            raise FormatError(
                f"{split_dir}/{MANIFEST_NAME} was built with another tokenizer "
                f"({manifest.tokenizer.get('name_or_path')}, digest {manifest.tokenizer.get('digest')}) than "
                f"{cfg.tokenizer_name_or_path} (digest {loaded.identity['digest']})"
            )
        if input_dir:
            fresh, report = inspect_cache.status(split_dir, manifest, input_dir, cfg.tokenizer_name_or_path)
            if not fresh:
                raise FormatError(f"{split_dir} is stale against {input_dir}:\n{report}")
        dataset = DATASET_TYPES[cfg.datasets_type](split_dir, cfg.max_seq_length)
        _ = dataset.reader.maps  # size-check every file now, not mid-training
        dataset.reader.close()
    except FormatError as e:
        raise UserError(f"{e}\nto rebuild the cache: {fix_command(cfg, manifest)}") from None
    return dataset


class MlmTrainer(Trainer):
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:
            logs["eval_perplexity"] = math.exp(min(logs["eval_loss"], 50.0))
        super().log(logs, start_time)


def train(cfg: PreprocessConfig, margs: ModelArguments, mlm: MlmArguments, targs: TrainingArguments,
          check_inputs: bool = True) -> tuple[dict[str, Any], Trainer]:
    """Train, evaluate and save; the final metrics and the trainer (its state and model).

    ``check_inputs``: when --train_dir/--eval_dir are given, refuse a cache that
    is stale against them (run_mlm.py skips it: it has just preprocessed).
    """
    settings = {"add_space_token": cfg.add_space_token}
    try:
        loaded = load_tokenizer(cfg.tokenizer_name_or_path, cfg.tokenizer_type, settings)
    except TokenizerError as e:
        raise UserError(str(e)) from None
    train_set = check_split(cfg, "train", loaded, cfg.train_dir if check_inputs else None)
    has_eval = (Path(cfg.datasets_cache_dir) / "validation" / MANIFEST_NAME).is_file()
    eval_set = check_split(cfg, "validation", loaded, cfg.eval_dir if check_inputs else None) if has_eval else None
    if targs.eval_strategy != "no" and eval_set is None:
        raise UserError(f"--eval_strategy {targs.eval_strategy} but {cfg.datasets_cache_dir}/validation has no "
                              "manifest; preprocess with --eval_dir, or drop --eval_strategy")
    identity = loaded.identity
    try:
        model = build_model(margs.architecture, margs.config_name, margs.model_name_or_path, identity, cfg.max_seq_length)
    except (ModelError, OSError, ValueError) as e:  # a checkpoint or config that does not load is the user's to fix
        raise UserError(f"model: {e}") from None
    ids = identity["special_ids"]
    collator = MlmCollator(loaded.tokenizer, [ids["bos"], ids["eos"], ids["pad"]], ids["pad"], mlm.mlm_probability)
    trainer = MlmTrainer(model=model, args=targs, data_collator=collator, train_dataset=train_set,
                         eval_dataset=eval_set, processing_class=loaded.tokenizer)
    result = trainer.train(resume_from_checkpoint=targs.resume_from_checkpoint)
    metrics: dict[str, Any] = dict(result.metrics)
    if eval_set is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(targs.output_dir)
    if trainer.is_world_process_zero():
        copy_manifests(Path(cfg.datasets_cache_dir), Path(targs.output_dir))
        trainer.save_metrics("all", metrics)
        trainer.save_state()  # trainer_state.json: the loss history beside the model
    return metrics, trainer


def copy_manifests(cache: Path, output_dir: Path) -> None:
    """Keep, beside the model, the identity of the data it was trained on."""
    dest = output_dir / "manifests"
    dest.mkdir(parents=True, exist_ok=True)
    for split_manifest in cache.glob(f"*/{MANIFEST_NAME}"):
        shutil.copy2(split_manifest, dest / f"{split_manifest.parent.name}.json")
