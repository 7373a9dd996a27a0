"""The model card and its picture, through mlm-train on two named corpora: what the card says is what the run
recorded, the hub's parser reads it, and a resumed run (on changed data) refreshes both."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from common.run_dir import absolute_argv, command_line, command_record, config_file
from preprocess.__main__ import main as preprocess_main
from preprocess.inspect_cache import main as inspect_main
from preprocess.train_tokenizer import main as train_tokenizer_main
from tests.corpus import write_shards
from train.__main__ import main as train_main
from train.card_sections import rates
from train.checkpoints import checkpoints
from train.curves import NO_MATPLOTLIB, series

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

PNG = b"\x89PNG\r\n\x1a\n"
WEIGHTS = {"wiki": 0.7, "news": 0.3}


def _corpora(root: Path) -> tuple[str, Path, Path]:
    """Two named corpora's text, a BPE tokenizer mlm-train-tokenizer trained on them, and their cache."""
    write_shards(root / "text" / "wiki", n_shards=2, lines_per_shard=200, seed=1)
    write_shards(root / "text" / "news", n_shards=2, lines_per_shard=150, seed=2)
    spec = f"wiki={root / 'text' / 'wiki'},news={root / 'text' / 'news'}"
    tok, cache = root / "tok", root / "cache"
    assert train_tokenizer_main(["--type", "bpe", "--train_dir", spec, "--vocab_size", "512", "--output_dir",
                                 str(tok), "--num_workers", "1"]) == 0
    _preprocess(spec, tok, cache)
    return spec, tok, cache


def _preprocess(spec: str, tok: Path, cache: Path) -> None:
    assert preprocess_main(["--tokenizer_name_or_path", str(tok), "--train_dir", spec, "--datasets_cache_dir",
                            str(cache), "--max_seq_length", "32", "--validation_split_percentage", "10",
                            "--num_workers", "1"]) == 0


def _args(tok: Path, cache: Path, out: Path, *flags: str) -> list[str]:
    return ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", "32",
            "--architecture", "roberta-tiny", "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2", "--logging_steps", "1",
            "--report_to", "none", "--disable_tqdm", "true", "--seed", "3",
            "--mixture", ",".join(f"{n}={w}" for n, w in WEIGHTS.items()), *flags]


def _train(tok: Path, cache: Path, out: Path, *flags: str) -> int:
    return train_main(_args(tok, cache, out, *flags))


def _small_cache(root: Path, tok: Path) -> Path:
    write_shards(root / "a", n_shards=1, lines_per_shard=100, seed=1)
    write_shards(root / "b", n_shards=1, lines_per_shard=100, seed=2)
    _preprocess(f"wiki={root / 'a'},news={root / 'b'}", tok, root / "cache")
    return root / "cache"


def _row(card: str, corpus: str, split: str) -> list[str]:
    line = next(x for x in card.splitlines() if x.startswith(f"| {corpus} | {split} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _picture_ok(path: Path) -> None:
    """A PNG that an image library decodes (Pillow comes with matplotlib)."""
    data = path.read_bytes()
    assert data[:8] == PNG
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        assert im.size[0] > 100 and im.size[1] > 100


def test_the_card_says_what_the_run_recorded_and_a_resumed_run_refreshes_it(capsys, tmp_path):
    pytest.importorskip("matplotlib")  # `make setup` installs the plot extra; its absence has its own test
    spec, tok, cache = _corpora(tmp_path)
    out = tmp_path / "out"
    assert _train(tok, cache, out, "--max_steps", "4", "--language", "th", "en", "--license", "apache-2.0") == 0
    assert "model card was not written" not in capsys.readouterr().err

    card = ModelCard.load(out / "README.md")  # the hub's own parser
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "fill-mask"
    assert card.data.language == ["th", "en"] and card.data.license == "apache-2.0"
    text = (out / "README.md").read_text(encoding="utf-8")
    assert "4 optimizer steps" in text and "![training curves](training_curves.png)" in text
    assert "by mlm-train-tokenizer (bpe)" in text  # tokenizer/training.json
    record = json.loads((out / "provenance.json").read_text())
    data, counted = record["data"][-1]["data"], record["tokens_seen"]
    total = json.loads((out / "trainer_state.json").read_text())["num_input_tokens_seen"]
    assert set(counted) == set(WEIGHTS) and sum(counted.values()) == total > 0  # every real token, in one corpus
    assert "| tokens seen | fingerprint |" in text  # counted, not estimated: no "(about)"
    for name, weight in WEIGHTS.items():
        split = data["splits"][f"{name}/train"]
        row = _row(text, name, "train")
        assert row[5] == f"{weight:.1%}" and row[8] == f"`{split['fingerprint']}`"
        assert row[7] == f"{counted[name]:,}" and row[6] == f"{counted[name] / split['tokens']:,.2f}"
        assert _row(text, name, "validation")[5] == "held out"
    assert json.loads((out / "checkpoint-2" / "data.json").read_text())["tokens_seen"]["wiki"] < counted["wiki"]
    assert "| samples seen | 16 |" in text
    logged = json.loads((out / "trainer_state.json").read_text())["log_history"]
    seen = [h["tokens_seen"] for h in logged if "tokens_seen" in h]  # train/throughput.py's, where it logs them
    assert f"| tokens seen | {f'{seen[-1]:,}' if seen else 'not recorded'} |" in text
    eval_loss = json.loads((out / "all_results.json").read_text())["eval_loss"]
    assert f"| all corpora (weighted by blocks) | {eval_loss:.4f}" in text
    assert "The data did not change during the run." in text
    _picture_ok(out / "training_curves.png")
    ckpt = out / "checkpoint-2"
    assert "step 2 of 4" in (ckpt / "README.md").read_text() and ModelCard.load(ckpt / "README.md").data.license
    _picture_ok(ckpt / "training_curves.png")
    first_picture = (out / "training_curves.png").read_bytes()

    # the news text changes; the run goes on over it for 2 more steps
    (tmp_path / "text" / "news" / "shard_000.txt").write_text("a line of news that was edited\n" * 40)
    _preprocess(spec, tok, cache)
    assert _train(tok, cache, out, "--max_steps", "6", "--resume_from_checkpoint", "latest", "--allow_data_change",
                  "--language", "th", "en") == 0
    assert "model card was not written" not in capsys.readouterr().err
    text = (out / "README.md").read_text(encoding="utf-8")
    assert "6 optimizer steps" in text and "| samples seen | 24 |" in text
    counted = json.loads((out / "provenance.json").read_text())["tokens_seen"]  # went on from checkpoint-4's count
    assert sum(counted.values()) == json.loads((out / "trainer_state.json").read_text())["num_input_tokens_seen"]
    assert all(counted[n] >= json.loads((out / "checkpoint-4" / "data.json").read_text())["tokens_seen"][n]
               for n in WEIGHTS)
    assert "Data changes during the run (--allow_data_change): at step 4: news/train" in text
    after = json.loads((out / "provenance.json").read_text())["data"][-1]["data"]["splits"]["news/train"]
    assert _row(text, "news", "train")[8] == f"`{after['fingerprint']}`" != f"`{data['splits']['news/train']['fingerprint']}`"
    assert ModelCard.load(out / "README.md").data.license is None  # this process named none
    assert (out / "training_curves.png").read_bytes() != first_picture
    _picture_ok(out / "training_curves.png")
    reproduce = text.split("## Reproduce", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert "--resume_from_checkpoint" not in reproduce and f"--output_dir {out}" in reproduce

    assert inspect_main(["run", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] and summary["final_step"] == 6
    assert len(summary["data_changes"]) == 1 and "news/train" in summary["data_changes"][0]


def test_without_matplotlib_the_card_says_how_to_get_the_picture_and_the_run_goes_on(capsys, monkeypatch, tmp_path,
                                                                                      bpe_dir):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import` finds when it is not installed
    cache, out = _small_cache(tmp_path, bpe_dir), tmp_path / "out"
    assert _train(bpe_dir, cache, out, "--max_steps", "2") == 0
    for where in (out, out / "checkpoint-2"):
        text = (where / "README.md").read_text()
        assert NO_MATPLOTLIB in text and "training_curves.png" not in text.replace(NO_MATPLOTLIB, "")
        assert not (where / "training_curves.png").exists()
        assert "not recorded (no training.json beside it" in text  # a tokenizer not made by mlm-train-tokenizer
    assert "model card was not written" not in capsys.readouterr().err


def test_while_it_trains_the_output_dir_holds_its_newest_checkpoint_s_card(tmp_path, bpe_dir):
    """Refreshed with each checkpoint: a run stopped by a preemption signal leaves --output_dir's card and picture
    those of the checkpoint it saved last."""
    pytest.importorskip("matplotlib")
    cache, out = _small_cache(tmp_path, bpe_dir), tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "train", *_args(bpe_dir, cache, out, "--max_steps", "100000")],
                         cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    end = time.monotonic() + 300
    while not ((out / "README.md").is_file() or len(checkpoints(out)) > 1) and p.poll() is None \
            and time.monotonic() < end:  # a second checkpoint without a card: no need to wait longer
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGTERM)  # saves a checkpoint at the step it is at, then exits 143
    _, err = p.communicate(timeout=300)
    assert p.returncode == 143, err[-2000:]
    newest = checkpoints(out)[-1]
    text = (out / "README.md").read_text(encoding="utf-8")
    assert f"this is its newest checkpoint's card ({newest.name}, step {newest.name.split('-')[1]} of 100,000)" in text
    assert (out / "training_curves.png").read_bytes() == (newest / "training_curves.png").read_bytes()
    assert ModelCard.load(out / "README.md").data.pipeline_tag == "fill-mask"
    assert not (out / "trainer_state.json").exists() and "model card was not written" not in err


def test_a_fresh_run_removes_the_card_an_earlier_run_left_but_not_a_readme_of_the_user_s(tmp_path):
    from train.model_card import ModelCard

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for d, text in ((ours, "---\ntags:\n- fill-mask\n- mlm-pretrain\n---\n# old run\n"), (theirs, "# my notes\n")):
        d.mkdir()
        (d / "README.md").write_text(text)
        (d / "training_curves.png").write_bytes(PNG)
        ModelCard(None).start_over(d)  # type: ignore[arg-type]  (start_over reads no facts)
    assert not (ours / "README.md").exists() and not (ours / "training_curves.png").exists()
    assert (theirs / "README.md").read_text() == "# my notes\n" and (theirs / "training_curves.png").exists()


def test_held_out_losses_of_a_subset_say_so(tmp_path, bpe_dir):
    """--max_eval_samples evaluates the first N blocks: the card's losses say so, beside a data table that counts
    every validation block."""
    cache = _small_cache(tmp_path, bpe_dir)
    for name, flags in (("subset", ["--max_eval_samples", "3"]), ("whole", [])):
        assert _train(bpe_dir, cache, tmp_path / name, "--max_steps", "2", "--save_strategy", "no", *flags) == 0
    subset, whole = ((tmp_path / n / "README.md").read_text(encoding="utf-8") for n in ("subset", "whole"))
    assert ("Held-out masked-LM loss (perplexity), on the first 3 blocks of each held-out split only "
            "(--max_eval_samples 3).") in subset
    assert "Held-out masked-LM loss (perplexity).\n" in whole and "--max_eval_samples" not in whole


def test_a_bad_language_or_license_is_one_line(capsys, tmp_path, bpe_dir):
    for flags, says in ((["--language", "th en"], "is not a language code"),
                        (["--license", "Apache 2.0"], "a license id is one word")):
        assert train_main(["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(tmp_path),
                           "--output_dir", str(tmp_path / "o"), *flags]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and err.count("\n") == 1, err


def test_the_command_pastes_anywhere(tmp_path):
    """Relative paths that exist become absolute (also in NAME=DIR lists and --flag=value); other values stay."""
    (tmp_path / "tok").mkdir()
    (tmp_path / "news").mkdir()
    argv = ["--tokenizer_name_or_path", "tok", "--train_dir", "news=news,wiki=/abs/wiki", "--output_dir=out",
            "--report_to", "none", "--resume_from_checkpoint", "--overwrite_output_dir", "true"]
    got = absolute_argv(argv, str(tmp_path))
    assert got[1] == str(tmp_path / "tok") and got[3] == f"news={tmp_path / 'news'},wiki=/abs/wiki"
    assert got[4] == "--output_dir=out" and got[6] == "none"  # out does not exist yet: left as given
    record = {**command_record("mlm-train", argv, str(tmp_path)), "program": "mlm-train"}
    resume = shlex.split(command_line(record, resume=True))
    assert resume[-2:] == ["--resume_from_checkpoint", "latest"] and "--overwrite_output_dir" not in resume
    assert resume.count("--resume_from_checkpoint") == 1 and "true" not in resume
    fresh = shlex.split(command_line(record, resume=False))
    assert "--resume_from_checkpoint" not in fresh and "--overwrite_output_dir" in fresh
    (tmp_path / "run.json").write_text("{}")
    record = command_record("mlm-train", ["run.json"], str(tmp_path))  # a config file takes no flag beside it
    assert config_file(record) == str(tmp_path / "run.json")
    assert shlex.split(command_line(record, resume=True))[1:] == [str(tmp_path / "run.json")]


def test_mean_speed_weighs_each_logged_interval_by_its_time():
    logged = [{"step": 1, "tokens_seen": 100, "tokens_per_second": 10, "samples_per_second": 1.0, "mfu": 10.0},
              {"step": 2, "tokens_seen": 1100, "tokens_per_second": 1000, "samples_per_second": 5.0, "mfu": 40.0},
              {"step": 2, "eval_loss": 3.0}]
    got = rates(logged)  # 10 s then 1 s: 1,100 tokens in 11 s
    assert got["tokens_per_second"] == pytest.approx(100.0) and got["mfu"] == pytest.approx((10 * 10 + 40 * 1) / 11)
    assert rates([{"step": 1, "loss": 2.0}]) == {}


def test_the_curves_fall_back_to_steps_when_tokens_seen_is_not_logged():
    logged = [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0}, {"step": 2, "eval_loss": 4.5}]
    lines, label = series(logged)
    assert label.startswith("optimizer step") and lines["held-out"] == ([2.0], [4.5])
    counted = [{"step": 1, "loss": 5.0, "tokens_seen": 100}, {"step": 3, "loss": 4.0, "tokens_seen": 300},
               {"step": 2, "eval_wiki_loss": 4.5}, {"step": 2, "eval_news_loss": 4.6}]
    lines, label = series(counted)
    assert label == "tokens seen" and lines["training loss"] == ([100.0, 300.0], [5.0, 4.0])
    assert lines["held-out: wiki"] == ([200.0], [4.5]) and "held-out: news" in lines  # at its step's count
