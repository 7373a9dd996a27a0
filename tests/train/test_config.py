"""Parsing the train commands: flags and a JSON file give the same settings, old names included;
every flag a command accepts does something there; parsing itself changes nothing."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from common.config import FLAG_OWNERS, CacheArguments
from preprocess.config import PreprocessConfig
from run_mlm import FrontArguments
from run_mlm import main as run_mlm_main
from train.__main__ import main as train_main
from train.config import Parsed, parse, translate_legacy

SETTINGS = {  # the users' old names among them
    "tokenizer_name_or_path": "tok", "datasets_cache_dir": "cache", "max_seq_length": 64,
    "output_dir": "out", "evaluation_strategy": "steps", "eval_steps": 5, "model_dir": "ckpt-3",
    "logging_dir": "tb", "per_device_train_batch_size": 4, "fp16": True, "seed": 7,
}


def _argv(settings: dict) -> list[str]:
    out = []
    for k, v in settings.items():
        out += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    return out


def _json(tmp_path, settings: dict) -> list[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    return [str(path)]


def _same(a: Parsed, b: Parsed) -> None:
    assert a.cache == b.cache and a.model == b.model and a.mlm == b.mlm and a.extra == b.extra
    assert a.training.to_dict() == b.training.to_dict()
    assert a.notes == b.notes and a.env == b.env


def test_a_json_config_and_the_same_flags_give_the_same_settings_old_names_included(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    from_json = parse(_json(tmp_path, SETTINGS), "mlm-train")
    _same(from_json, parse(_argv(SETTINGS), "mlm-train"))
    t = from_json.training
    assert t.eval_strategy == "steps" and t.resume_from_checkpoint == "ckpt-3"  # were dropped from a JSON file
    assert t.report_to == ["tensorboard"] and from_json.env == {"TENSORBOARD_LOGGING_DIR": "tb"}
    assert t.fp16 is False and t.dataloader_pin_memory is False  # the CPU fix-ups apply to a JSON file too
    assert any("--evaluation_strategy is --eval_strategy" in n for n in from_json.notes)
    # under torchrun on CPU: use_cpu and gloo (the mapping alone: TrainingArguments would start a process group)
    values, _, _ = translate_legacy(dict(SETTINGS), set(SETTINGS), cuda=False, world_size=2)
    assert values["use_cpu"] is True and values["ddp_backend"] == "gloo"
    values, _, _ = translate_legacy({**SETTINGS, "ddp_backend": "nccl"}, {*SETTINGS, "ddp_backend"}, False, 2)
    assert values["ddp_backend"] == "nccl"
    # a user's own choice wins over a fix-up
    mine = parse(_argv({**SETTINGS, "dataloader_pin_memory": "true", "report_to": "none"}), "mlm-train")
    assert mine.training.dataloader_pin_memory is True and mine.training.report_to == []
    dashed = parse([*_argv(SETTINGS), "--dataloader-pin-memory", "true", "--report-to", "none"], "mlm-train")
    assert dashed.training.dataloader_pin_memory is True and dashed.training.report_to == []  # the dashed spelling


def test_run_mlm_takes_both_commands_flags_from_either_path(tmp_path):
    settings = {**SETTINGS, "train_dir": "text", "num_workers": 3, "overwrite_cache": True, "build_dataset_only": True}
    a = parse(_json(tmp_path, settings), "run_mlm.py", cache_class=PreprocessConfig, extra=(FrontArguments,))
    _same(a, parse(_argv(settings), "run_mlm.py", cache_class=PreprocessConfig, extra=(FrontArguments,)))
    assert a.cache.num_workers == 3 and a.cache.overwrite_cache and a.extra == (FrontArguments(True),)


def test_parsing_has_no_side_effects(capsys, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    parse(_argv(SETTINGS), "mlm-train")
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("flags,owner", [
    (["--num_workers", "8"], "mlm-preprocess"),
    (["--overwrite_cache"], "mlm-preprocess"),
    (["--task_size_mb", "1"], "mlm-preprocess"),
    (["--verify_outputs"], "mlm-preprocess"),
    (["--build_dataset_only"], "run_mlm.py"),
])
def test_mlm_train_refuses_another_commands_flag_by_name(capsys, tmp_path, flags, owner):
    argv = ["--tokenizer_name_or_path", "tok", "--datasets_cache_dir", "cache", "--output_dir", str(tmp_path)]
    assert train_main([*argv, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flags[0]} is a flag of {owner}, not of mlm-train")
    key = flags[0][2:]
    assert train_main(_json(tmp_path, {"tokenizer_name_or_path": "t", "datasets_cache_dir": "c",
                                       "output_dir": str(tmp_path), key: 1 if len(flags) > 1 else True})) == 2
    assert f"--{key} is a flag of {owner}" in capsys.readouterr().err


def test_the_flag_owner_table_is_exactly_the_commands_own_fields():
    shared = {f.name for f in dataclasses.fields(CacheArguments)}
    preprocess_only = {f.name for f in dataclasses.fields(PreprocessConfig)} - shared
    front_only = {f.name for f in dataclasses.fields(FrontArguments)}
    train_only = {"input_check"}  # run_mlm.py has just brought the cache up to date: nothing to check
    assert FLAG_OWNERS == {**dict.fromkeys(preprocess_only, "mlm-preprocess"), **dict.fromkeys(front_only, "run_mlm.py"),
                           **dict.fromkeys(train_only, "mlm-train")}


def test_a_bad_json_config_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert run_mlm_main([str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert train_main(_json(tmp_path, {"tokenizer_name_or_path": "t", "datasets_cache_dir": "c",
                                       "output_dir": str(tmp_path), "no_such_key": 1})) == 2
    assert "no_such_key" in capsys.readouterr().err
