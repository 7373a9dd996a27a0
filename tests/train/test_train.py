"""The train stage through its entry points: the users' command, checks, loss, resume, DDP."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

from preprocess.__main__ import main as preprocess_main
from run_mlm import main as run_mlm_main
from tests.corpus import write_shards
from tests.train import record
from train.__main__ import main as train_main

ROOT = Path(__file__).parents[2]


def seed_command(tok: Path, train: Path, ev: Path, cache: Path, out: Path, **values) -> list[str]:
    """The users' run_mlm.py command (../shared/run_mlm_command.md), every flag, tiny values."""
    v = {"max_seq_length": 32, "learning_rate": 5e-4, "adam_beta2": 0.98, "max_steps": 4, "batch": 4, "grad_acc": 1,
         "warmup_steps": 1, "seed": 42, "save_steps": 2, "eval_steps": 2, "architecture": "roberta-tiny",
         "tokenizer_type": "auto", **values}
    return [
        "--tokenizer_name_or_path", str(tok), "--ext", "txt", "--train_dir", str(train), "--eval_dir", str(ev),
        "--fp16", "--max_seq_length", str(v["max_seq_length"]), "--learning_rate", str(v["learning_rate"]),
        "--weight_decay", "0.01", "--adam_beta2", str(v["adam_beta2"]), "--adam_epsilon", "1e-6",
        "--max_steps", str(v["max_steps"]), "--per_device_train_batch_size", str(v["batch"]),
        "--per_device_eval_batch_size", str(v["batch"]), "--gradient_accumulation_steps", str(v["grad_acc"]),
        "--warmup_steps", str(v["warmup_steps"]), "--seed", str(v["seed"]), "--save_steps", str(v["save_steps"]),
        "--logging_steps", "10", "--save_total_limit", "100", "--evaluation_strategy", "steps",
        "--eval_steps", str(v["eval_steps"]), "--prediction_loss_only", "--logging_dir", str(out / "tb"),
        "--output_dir", str(out), "--add_space_token", "--datasets_cache_dir", str(cache),
        "--datasets_type", "MemmapConcatFullSentenceTextDataset", "--architecture", v["architecture"],
        "--tokenizer_type", v["tokenizer_type"],
    ]


@pytest.fixture(scope="session")
def space_tok(tmp_path_factory, bpe_dir) -> Path:
    """The byte-level BPE tokenizer plus the users' space token <_>, so --add_space_token applies."""
    d = tmp_path_factory.mktemp("space_tok")
    tok = AutoTokenizer.from_pretrained(bpe_dir)
    tok.add_tokens(["<_>"])
    tok.save_pretrained(d)
    return d


def _texts(root: Path) -> tuple[Path, Path]:
    train, ev = root / "txt_train", root / "txt_eval"
    write_shards(train, n_shards=2, lines_per_shard=150)
    write_shards(ev, n_shards=1, lines_per_shard=60, seed=5)
    return train, ev


def test_the_users_command_runs_verbatim_and_the_model_loads(tmp_path, space_tok):
    train, ev = _texts(tmp_path)
    out = tmp_path / "out"
    args = seed_command(space_tok, train, ev, tmp_path / "cache", out)
    r = subprocess.run([sys.executable, str(ROOT / "run_mlm.py"), *args], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "--fp16 needs a CUDA GPU" in r.stderr and "eval_perplexity=" in r.stdout
    assert "--evaluation_strategy is --eval_strategy" in r.stderr
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "manifests" / "train.json").read_text())["tokenizer"]["settings"]["add_space_token"]
    assert list((out / "tb").rglob("events.out.tfevents*")), "--logging_dir must receive tensorboard logs"
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_perplexity"] > 1 and results["train_loss"] > 0
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(out))
    fill = pipeline("fill-mask", model=str(out), tokenizer=str(out), device="cpu")
    assert len(fill("the <mask> of")) == 5
    # rerun with --build_dataset_only: preprocessing is fresh, nothing trains
    r = subprocess.run([sys.executable, str(ROOT / "run_mlm.py"), *args, "--build_dataset_only",
                        "--output_dir", str(tmp_path / "never")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "cache is fresh" in r.stdout and not (tmp_path / "never").exists()


def test_loss_under_gradient_accumulation_equals_the_hand_computed_loss(tmp_path, bpe_dir, monkeypatch):
    train, ev = _texts(tmp_path)
    cfg = json.loads((ROOT / "train" / "configs" / "roberta-tiny.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (tmp_path / "nodrop.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(record, "RECORDED", [])
    record.install(monkeypatch.setattr)
    out = tmp_path / "out"
    args = seed_command(bpe_dir, train, ev, tmp_path / "cache", out, learning_rate=0.0, max_steps=1, grad_acc=2,
                        warmup_steps=0, save_steps=100, eval_steps=100)
    args.remove("--add_space_token")
    args += ["--config_name", str(tmp_path / "nodrop.json"), "--logging_steps", "1"]
    assert run_mlm_main(args) == 0
    trainer = record.TRAINERS[-1]
    model = AutoModelForMaskedLM.from_pretrained(out)  # lr 0: the weights the loss was computed with
    train_batches = [b for training, b in record.RECORDED if training]
    eval_batches = [b for training, b in record.RECORDED if not training]
    assert len(train_batches) == 2
    logged = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    expected = sum(record.hand_losses(model, train_batches)) / 2
    assert logged == pytest.approx(expected, rel=1e-4)  # not 2x
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    last_pass = eval_batches[-len(eval_batches) // len(evals):]  # the final evaluation's batches
    per_batch = record.hand_losses(model, last_pass)
    sizes = [len(b["input_ids"]) for b in last_pass]
    expected_eval = sum(loss * n for loss, n in zip(per_batch, sizes)) / sum(sizes)
    assert evals[-1] == pytest.approx(expected_eval, rel=1e-4)


def _original_ids(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    """The unmasked blocks of a batch: labels hold the original id wherever a token was masked."""
    ids = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    return [row[m.bool()].tolist() for row, m in zip(ids, batch["attention_mask"])]


def test_resume_from_checkpoint_ends_at_the_right_step_with_the_same_data_order(tmp_path, bpe_dir, monkeypatch):
    train, ev = _texts(tmp_path)
    monkeypatch.setattr(record, "RECORDED", [])
    record.install(monkeypatch.setattr)
    base = dict(max_steps=6, save_steps=3, eval_steps=100, grad_acc=1, batch=2)
    full = tmp_path / "full"
    args = seed_command(bpe_dir, train, ev, tmp_path / "cache", full, **base)
    args.remove("--add_space_token")
    assert run_mlm_main(args) == 0
    seen_full = [_original_ids(b) for training, b in record.RECORDED if training]
    # "killed" after checkpoint-3: a dir holding only that checkpoint, resumed with the seed's --model_dir
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(full / "checkpoint-3", cut / "checkpoint-3")
    record.RECORDED.clear()
    args2 = seed_command(bpe_dir, train, ev, tmp_path / "cache", cut, **base)
    args2.remove("--add_space_token")
    assert run_mlm_main([*args2, "--model_dir", str(cut / "checkpoint-3")]) == 0
    seen_resumed = [_original_ids(b) for training, b in record.RECORDED if training]
    assert json.loads((cut / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6
    assert len(seen_full) == 6 and seen_resumed == seen_full[3:]


def test_a_resumed_run_logs_the_same_losses_and_ends_with_the_same_weights(tmp_path, bpe_dir, monkeypatch):
    """Killed after checkpoint-4 and resumed: every later train and eval loss, and the final weights, are those
    of the run that was not interrupted. Masks drawn in the DataLoader failed this: it collates a batch ahead,
    so checkpoint-4's RNG state already lay past batch 5's masks (losses 5..8 off by up to 0.03, weights 1.1e-3).
    """
    train, ev = _texts(tmp_path)
    monkeypatch.setattr(record, "RECORDED", [])
    record.install(monkeypatch.setattr)

    def run(out: Path, *extra: str) -> tuple[dict, dict, dict]:
        args = seed_command(bpe_dir, train, ev, tmp_path / "cache", out, max_steps=8, save_steps=4, eval_steps=2,
                            batch=2)
        args.remove("--add_space_token")
        args += ["--logging_steps", "1", "--dataloader_num_workers", "0", "--per_device_eval_batch_size", "32", *extra]
        assert run_mlm_main(args) == 0
        history = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
        after_4 = [h for h in history if h["step"] > 4]
        return ({h["step"]: h["loss"] for h in after_4 if "loss" in h},
                {h["step"]: h["eval_loss"] for h in after_4 if "eval_loss" in h},
                load_file(out / "model.safetensors"))

    losses, eval_losses, weights = run(tmp_path / "full")
    assert sorted(losses) == [5, 6, 7, 8] and sorted(eval_losses) == [6, 8]
    evals = [b for training, b in record.RECORDED if not training]
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-4", cut / "checkpoint-4")
    resumed, resumed_eval, resumed_weights = run(cut, "--resume_from_checkpoint", str(cut / "checkpoint-4"))
    assert resumed == losses and resumed_eval == eval_losses  # exactly
    assert weights.keys() == resumed_weights.keys()
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)
    # every evaluation (steps 2, 4, 6 and 8; step 8's serves as the final one) masks its batches alike
    assert len(evals) % 4 == 0
    per_pass = len(evals) // 4
    assert all(torch.equal(evals[k]["labels"], evals[k % per_pass]["labels"]) for k in range(len(evals)))


def test_a_cache_without_blocks_is_refused_in_one_line(capsys, tmp_path, wordpiece_dir):
    text, blank, nothing = tmp_path / "text", tmp_path / "blank", tmp_path / "nothing"
    write_shards(text, n_shards=1, lines_per_shard=40)
    blank.mkdir()
    (blank / "blank.txt").write_text("\n\n   \n\t\n")
    nothing.mkdir()
    (nothing / "controls.txt").write_text("\x01\x02\n\u200b\n")  # the BERT normalizer removes every character

    def cache(name: str, train: Path, ev: Path) -> list[str]:
        flags = ["--tokenizer_name_or_path", str(wordpiece_dir), "--datasets_cache_dir", str(tmp_path / name),
                 "--max_seq_length", "32"]
        assert preprocess_main([*flags, "--train_dir", str(train), "--eval_dir", str(ev)]) == 0
        return [*flags, "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / name / "out"),
                "--max_steps", "1", "--per_device_train_batch_size", "2", "--report_to", "none"]

    args = cache("blank_train", blank, text)
    assert "0 blocks" in capsys.readouterr().out  # preprocess itself accepts it
    assert train_main(args) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'blank_train' / 'train'} holds no blocks")
    assert "had no tokens" in err[0] and "add text there and rebuild the cache: " in err[0]
    assert f"--train_dir {blank} --eval_dir {text} " in err[0]
    args = cache("empty_eval", text, nothing)
    capsys.readouterr()
    assert train_main([*args, "--eval_strategy", "steps", "--eval_steps", "1"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'empty_eval' / 'validation'} holds no blocks")
    assert "0 lines with tokens, 2 that encode to none" in err[0] and "without --eval_strategy" in err[0]
    assert train_main(args) == 0  # no evaluation asked for: trains, and says why it does not evaluate
    captured = capsys.readouterr()
    assert "validation holds no blocks; no evaluation" in captured.err and "eval_loss" not in captured.out


@pytest.mark.parametrize("content", [b"\x00\xff garbage", b"[]", b"null", b'{"format_version": 1, "shards": 5}'])
def test_a_damaged_manifest_is_one_line_for_mlm_train_and_repaired_by_run_mlm(capsys, tmp_path, bpe_dir, content):
    train, ev = _texts(tmp_path)
    cache = tmp_path / "cache"
    args = seed_command(bpe_dir, train, ev, cache, tmp_path / "out", max_steps=1)
    args.remove("--add_space_token")
    assert run_mlm_main([*args, "--build_dataset_only"]) == 0
    mpath = cache / "train" / "manifest.json"
    mpath.write_bytes(content)
    capsys.readouterr()
    assert train_main([a for a in args if a != "--fp16"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("note:", "WARNING"))]
    assert len(err) == 1 and err[0].startswith(f"error: {mpath}: ") and "to rebuild the cache (from any directory): " in err[0]
    # run_mlm.py preprocesses first: the manifest is rewritten from the valid pieces, nothing re-tokenized
    assert run_mlm_main([*args, "--build_dataset_only"]) == 0
    captured = capsys.readouterr()
    assert f"warning: {mpath}" in captured.err and "2 shards reused, 0 tokenized" in captured.out
    # special ids edited in place (within the vocabulary): training would frame every block with other tokens
    good = mpath.read_text()
    m = json.loads(good)
    m["tokenizer"]["special_ids"]["bos"] = 7
    mpath.write_text(json.dumps(m))
    assert train_main([a for a in args if a != "--fp16"]) == 2
    assert "special or separator ids differ from the loaded tokenizer's" in capsys.readouterr().err
    mpath.write_text(good)
    # a model dir whose manifests/train.json (the tokenizer it was trained with) is damaged
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifests").mkdir()
    (model / "manifests" / "train.json").write_bytes(content)
    assert train_main([*args, "--model_name_or_path", str(model)]) == 2
    assert "trained with: restore it" in capsys.readouterr().err


def test_a_mismatched_or_damaged_cache_stops_training_with_the_fix(capsys, tmp_path, bpe_dir, wordpiece_dir):
    train, ev = _texts(tmp_path)
    cache = tmp_path / "cache"
    args = seed_command(bpe_dir, train, ev, cache, tmp_path / "out")
    args.remove("--add_space_token")
    assert run_mlm_main([*args, "--build_dataset_only"]) == 0
    capsys.readouterr()
    other = seed_command(wordpiece_dir, train, ev, cache, tmp_path / "out")
    other.remove("--add_space_token")
    assert train_main(other) == 2
    err = capsys.readouterr().err
    assert "built with another tokenizer" in err and "files differ: tokenizer.json" in err
    # the fix rebuilds both splits from their own dirs
    assert f"--train_dir {train} --eval_dir {ev} " in err and f"--tokenizer_name_or_path {wordpiece_dir} " in err
    longer = [*args, "--max_seq_length", "64"]
    assert train_main(longer) == 2
    assert "packed for --max_seq_length 32" in capsys.readouterr().err
    tokens = next((cache / "train" / "pieces").glob("*.tokens.npy"))
    tokens.write_bytes(tokens.read_bytes()[:-6])
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert tokens.name in err and "truncated" in err and not (tmp_path / "out" / "model.safetensors").exists()
    assert train_main([*args, "--no_such_flag", "1"]) == 2
    assert "--no_such_flag" in capsys.readouterr().err
    # text edited since preprocessing: mlm-train given --train_dir refuses, naming the shard
    assert run_mlm_main([*args, "--build_dataset_only", "--overwrite_cache"]) == 0
    edited = sorted(train.glob("*.txt"))[0]
    edited.write_text(edited.read_text() + "one more line\n")
    capsys.readouterr()
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "stale" in err and f"1 changed ({edited.name})" in err and "rebuild it (from any directory): " in err


def test_start_from_a_local_checkpoint_and_refuse_a_foreign_one(capsys, tmp_path, bpe_dir, wordpiece_dir):
    train, ev = _texts(tmp_path)
    args = seed_command(bpe_dir, train, ev, tmp_path / "cache", tmp_path / "first", max_steps=2, save_steps=100,
                        eval_steps=100)
    args.remove("--add_space_token")
    assert run_mlm_main(args) == 0
    second = [*args[: args.index("--output_dir")], "--output_dir", str(tmp_path / "second"),
              *args[args.index("--output_dir") + 2:], "--model_name_or_path", str(tmp_path / "first")]
    assert train_main(second) == 0
    first = AutoModelForMaskedLM.from_pretrained(tmp_path / "first").state_dict()
    assert any(not torch.equal(v, AutoModelForMaskedLM.from_pretrained(tmp_path / "second").state_dict()[k])
               for k, v in first.items())
    foreign = seed_command(wordpiece_dir, train, ev, tmp_path / "cache_wp", tmp_path / "third", max_steps=1)
    foreign.remove("--add_space_token")
    foreign += ["--model_name_or_path", str(tmp_path / "first"), "--eval_strategy", "no"]
    foreign.remove("--evaluation_strategy")
    foreign.remove("steps")
    capsys.readouterr()
    assert run_mlm_main(foreign) == 2
    assert "was trained with another tokenizer" in capsys.readouterr().err


def test_model_checks_say_how_to_fix(tmp_path):
    from train.model import ModelError, check_positions, load_config

    cfg = load_config("roberta-tiny", None, None)
    cfg.pad_token_id = 1
    check_positions(cfg, 512)
    with pytest.raises(ModelError, match="lower --max_seq_length or use --config_name with max_position_embeddings >= 1026"):
        check_positions(cfg, 1024)


@pytest.mark.slow
def test_two_rank_ddp_on_cpu_syncs_weights_and_logs_the_true_loss(tmp_path, bpe_dir):
    train, ev = _texts(tmp_path)
    out = tmp_path / "out"
    cfg = json.loads((ROOT / "train" / "configs" / "roberta-tiny.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (tmp_path / "nodrop.json").write_text(json.dumps(cfg))
    args = seed_command(bpe_dir, train, ev, tmp_path / "cache", out, max_steps=2, grad_acc=2, batch=2,
                        save_steps=1, eval_steps=100)
    args.remove("--add_space_token")
    args += ["--config_name", str(tmp_path / "nodrop.json"), "--per_device_eval_batch_size", "1", "--logging_steps", "1"]
    prefix = str(tmp_path / "rec")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        str(ROOT / "tests" / "train" / "record.py"), prefix, *args],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    digests = [Path(f"{prefix}.rank{k}.digest").read_text() for k in (0, 1)]
    assert digests[0] == digests[1], "ranks trained different weights"
    recs = [torch.load(f"{prefix}.rank{k}.pt") for k in (0, 1)]
    # step 1's logged loss: both ranks' 2 micro-batches, on the initial weights
    model = AutoModelForMaskedLM.from_pretrained(out)
    model.load_state_dict(torch.load(f"{prefix}.rank0.init.pt"))
    step1 = [b for rec in recs for b in [b for training, b in rec if training][:2]]
    logged = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())["log_history"][0]["loss"]
    assert logged == pytest.approx(sum(record.hand_losses(model, step1)) / 4, rel=1e-4)  # not 2x
    # eval loss, with weights fixed after training: every validation block once, over both ranks
    model = AutoModelForMaskedLM.from_pretrained(out)
    n_blocks = json.loads((tmp_path / "cache" / "validation" / "manifest.json").read_text())["totals"]["blocks"]
    per_rank = -(-n_blocks // 2)
    evals = [[b for training, b in rec if not training][-per_rank:] for rec in recs]  # the final evaluation
    interleaved = [b for pair in zip(*evals) for b in pair][:n_blocks]  # gather order, padding dropped
    losses = [x for x in record.hand_losses(model, interleaved) if math.isfinite(x)]  # as the Trainer filters
    expected = sum(losses) / len(losses)
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_loss"] == pytest.approx(expected, rel=1e-4)  # not 2x
    # and resumes: restart from checkpoint-1 under torchrun, end at step 2 with weights in sync
    out2 = tmp_path / "out2"
    args2 = [*args[: args.index("--output_dir")], "--output_dir", str(out2), *args[args.index("--output_dir") + 2:],
             "--resume_from_checkpoint", str(out / "checkpoint-1")]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        str(ROOT / "tests" / "train" / "record.py"), prefix + "2", *args2],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads((out2 / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    resumed = [Path(f"{prefix}2.rank{k}.digest").read_text() for k in (0, 1)]
    assert resumed[0] == resumed[1]


def test_make_train_on_a_line_by_line_cache(tmp_path, bpe_dir, bpe_cache):
    out = tmp_path / "out"
    r = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "train", f"VENV={sys.prefix}", f"TOKENIZER={bpe_dir}", f"CACHE_DIR={bpe_cache}",
         "MAX_SEQ_LENGTH=32", "ARCHITECTURE=roberta-tiny", "DATASETS_TYPE=MemmapLineByLineTextDataset",
         f"OUTPUT_DIR={out}", "ARGS=--max_steps 2 --per_device_train_batch_size 4 --save_strategy no"],
        capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and "train_loss=" in r.stdout


def test_eval_strategy_steps_without_a_validation_split_is_one_line(capsys, tmp_path, bpe_dir):
    train, _ = _texts(tmp_path)
    cache = tmp_path / "cache"
    flags = ["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(cache), "--max_seq_length", "32"]
    assert preprocess_main([*flags, "--train_dir", str(train)]) == 0
    capsys.readouterr()
    args = [*flags, "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
            "--report_to", "none", "--eval_strategy", "steps", "--eval_steps", "1"]
    assert train_main(args) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert len(err) == 1 and err[0] == (f"error: --eval_strategy steps but {cache}/validation has no manifest; "
                                        "preprocess with --eval_dir, or drop --eval_strategy")
    assert not (tmp_path / "out").exists()


def test_an_output_dir_with_checkpoints_is_resumed_or_refused_never_overwritten(capsys, tmp_path, bpe_dir,
                                                                                 monkeypatch):
    train, ev = _texts(tmp_path)
    out = tmp_path / "out"
    args = seed_command(bpe_dir, train, ev, tmp_path / "cache", out, max_steps=4, save_steps=2, eval_steps=2)
    args.remove("--add_space_token")
    assert run_mlm_main(args) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    # the last step evaluated: that evaluation is the final one, not a second pass over the eval set
    assert [h["step"] for h in state["log_history"] if "eval_loss" in h] == [2, 4]
    final = json.loads((out / "all_results.json").read_text())["eval_loss"]
    assert final == [h["eval_loss"] for h in state["log_history"] if "eval_loss" in h][-1]
    before = (out / "checkpoint-4" / "model.safetensors").read_bytes()
    capsys.readouterr()
    longer = [*args[: args.index("--max_steps")], "--max_steps", "6", *args[args.index("--max_steps") + 2:]]
    assert train_main([a for a in longer if a != "--fp16"]) == 2  # a fresh run would overwrite checkpoint-2, -4
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "holds checkpoints (the last: checkpoint-4)" in err[0]
    assert (out / "checkpoint-4" / "model.safetensors").read_bytes() == before
    for resume in (["--resume_from_checkpoint"], ["--resume_from_checkpoint", "latest"]):
        assert train_main([a for a in longer if a != "--fp16"] + resume) == 0
        steps = [h["step"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"]
                 if "loss" in h or "eval_loss" in h]
        assert max(steps) == 6 and (out / "checkpoint-6").is_dir()
        shutil.rmtree(out / "checkpoint-6")
    assert train_main([a for a in args if a != "--fp16"] + ["--output_dir", str(tmp_path / "empty"),
                                                            "--resume_from_checkpoint", "latest"]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_max_eval_samples_evaluates_the_first_n_blocks(tmp_path, bpe_dir, monkeypatch):
    train, ev = _texts(tmp_path)
    monkeypatch.setattr(record, "RECORDED", [])
    record.install(monkeypatch.setattr)
    args = seed_command(bpe_dir, train, ev, tmp_path / "cache", tmp_path / "out", max_steps=2, eval_steps=2)
    args.remove("--add_space_token")
    assert run_mlm_main([*args, "--max_eval_samples", "5"]) == 0
    evals = [b for training, b in record.RECORDED if not training]
    assert sum(len(b["input_ids"]) for b in evals) == 5
    from train.dataset import MemmapConcatFullSentenceTextDataset

    first = MemmapConcatFullSentenceTextDataset(tmp_path / "cache" / "validation", 32)[0]
    assert evals[0]["attention_mask"][0].sum() == len(first)  # the first block, in order


def _rows(batches: list[dict[str, torch.Tensor]]) -> list[tuple]:
    """A step's samples as they were trained on: each row's masked ids and labels (padding dropped)."""
    out = []
    for b in batches:
        for ids, labels, mask in zip(b["input_ids"], b["labels"], b["attention_mask"]):
            n = int(mask.sum())
            out.append((tuple(ids[:n].tolist()), tuple(labels[:n].tolist())))
    return sorted(out)


def test_a_run_resumed_on_fewer_processes_trains_the_same_samples_with_the_same_masks(tmp_path, bpe_dir):
    """Checkpointed on 2 processes, resumed on 1 with twice the accumulation (the same global batch): every
    later optimizer step trains on exactly the samples, and masks, of the uninterrupted 2-process run."""
    train, ev = _texts(tmp_path)
    cfg = json.loads((ROOT / "train" / "configs" / "roberta-tiny.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (tmp_path / "nodrop.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "tests" / "train" / "record.py")

    def command(out: Path, grad_acc: int) -> list[str]:
        args = seed_command(bpe_dir, train, ev, tmp_path / "cache", out, max_steps=6, batch=2, grad_acc=grad_acc,
                            save_steps=3, eval_steps=100)
        args.remove("--add_space_token")
        return [*args, "--config_name", str(tmp_path / "nodrop.json"), "--logging_steps", "1"]

    two = tmp_path / "two"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", script,
                        str(tmp_path / "a"), *command(two, 1)], capture_output=True, text=True, env=env, timeout=900,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    one = tmp_path / "one"
    r = subprocess.run([sys.executable, script, str(tmp_path / "b"), *command(one, 2), "--resume_from_checkpoint",
                        str(two / "checkpoint-3")], capture_output=True, text=True, env=env, timeout=900,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    ranks = [[b for training, b in torch.load(f"{tmp_path / 'a'}.rank{k}.pt") if training] for k in (0, 1)]
    resumed = [b for training, b in torch.load(f"{tmp_path / 'b'}.rank0.pt") if training]
    assert len(resumed) == 6 and all(len(r) == 6 for r in ranks)
    for step in (4, 5, 6):
        uninterrupted = _rows([ranks[0][step - 1], ranks[1][step - 1]])  # one micro-batch a rank a step
        assert _rows(resumed[2 * (step - 4) : 2 * (step - 3)]) == uninterrupted, f"step {step}"
    logged = [{h["step"]: h["loss"] for h in json.loads((d / "trainer_state.json").read_text())["log_history"]
               if "loss" in h} for d in (two, one)]
    for step in (4, 5, 6):
        assert logged[1][step] == pytest.approx(logged[0][step], rel=1e-3)
    # a resume with another global batch (2, the checkpoint's 4) goes on at the first sample not trained on
    r = subprocess.run([sys.executable, script, str(tmp_path / "c"), *command(tmp_path / "half", 1),
                        "--resume_from_checkpoint", str(two / "checkpoint-3")], capture_output=True, text=True,
                       env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "the global batch is now 2 (checkpoint-3's was 4): training continues at sample 12," in r.stderr
    smaller = [b for training, b in torch.load(f"{tmp_path / 'c'}.rank0.pt") if training]
    assert _rows(smaller[:1]) == _rows([ranks[0][3]])  # samples 12, 13: the first half of step 4 above


def test_a_run_length_of_no_steps_is_one_line_and_epochs_still_set_it(capsys, tmp_path, bpe_dir):
    """--max_steps 0 printed "this run's ... samples" and trained a step; --num_train_epochs 0 likewise. -1,
    transformers' default, still means "train --num_train_epochs epochs", given or not."""
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=1, lines_per_shard=30)
    flags = ["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(cache), "--max_seq_length", "32"]
    assert preprocess_main([*flags, "--train_dir", str(text)]) == 0
    capsys.readouterr()
    flags += ["--architecture", "roberta-tiny", "--per_device_train_batch_size", "8", "--report_to", "none",
              "--save_strategy", "no"]
    for length, named in ((["--max_steps", "0"], "--max_steps 0"), (["--max_steps", "-3"], "--max_steps -3"),
                          (["--num_train_epochs", "0"], "--num_train_epochs 0"),
                          (["--max_steps", "-1", "--num_train_epochs", "-2"], "--num_train_epochs -2")):
        out = tmp_path / "refused"
        assert train_main([*flags, "--output_dir", str(out), *length]) == 2, length
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
        assert len(err) == 1 and err[0].startswith(f"error: {named}: ") and "Traceback" not in err[0], err
        assert not out.exists()
    for length, epochs in ((["--num_train_epochs", "2"], 2.0), (["--max_steps", "-1", "--num_train_epochs", "1"], 1.0)):
        out = tmp_path / f"epochs{epochs}"
        assert train_main([*flags, "--output_dir", str(out), "--logging_steps", "1", *length]) == 0
        state = json.loads((out / "trainer_state.json").read_text())
        per_epoch = round(1 / state["log_history"][0]["epoch"])  # steps an epoch holds (step 1's epoch: 1/that)
        assert per_epoch > 1 and state["global_step"] == epochs * per_epoch and state["epoch"] == epochs, state
