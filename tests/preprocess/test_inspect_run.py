"""``mlm-inspect run OUTPUT_DIR``: where a training run is, read without torch from what the run wrote; on a run
killed by SIGKILL in the middle of a save, then resumed by pasting the command it printed from elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preprocess.__main__ import main as preprocess_main
from preprocess.inspect_cache import main as inspect_main
from tests.corpus import write_shards
from train.__main__ import main as train_main
from train.checkpoints import PARTIAL, checkpoints

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _cache(root: Path, tok: Path, lines: int = 60) -> Path:
    write_shards(root / "text" / "wiki", n_shards=2, lines_per_shard=lines, seed=1)
    write_shards(root / "text" / "news", n_shards=2, lines_per_shard=lines, seed=2)
    assert preprocess_main(["--tokenizer_name_or_path", str(tok), "--train_dir",
                            f"wiki={root / 'text' / 'wiki'},news={root / 'text' / 'news'}", "--datasets_cache_dir",
                            str(root / "cache"), "--max_seq_length", "32", "--validation_split_percentage", "10",
                            "--num_workers", "1"]) == 0
    return root / "cache"


def _flags(tok: str, cache: str, out: str, *extra: str) -> list[str]:
    return ["--tokenizer_name_or_path", tok, "--datasets_cache_dir", cache, "--max_seq_length", "32",
            "--output_dir", out, "--per_device_train_batch_size", "4", "--save_steps", "2", "--eval_strategy",
            "steps", "--eval_steps", "2", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
            "--seed", "3", *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, bpe_dir) -> Path:
    root = tmp_path_factory.mktemp("run")
    cache = _cache(root, bpe_dir)
    out = root / "out"
    assert train_main(_flags(str(bpe_dir), str(cache), str(out), "--architecture", "roberta-tiny", "--max_steps",
                             "4")) == 0
    return out


def _inspect(capsys, *args: str) -> tuple[int, str]:
    rc = inspect_main(["run", *args])
    return rc, capsys.readouterr().out


def test_a_finished_run_in_words_and_as_json(capsys, finished_run):
    rc, text = _inspect(capsys, str(finished_run))
    assert rc == 0
    assert f"state       finished at step 4 of 4: the final model is saved in {finished_run}" in text
    assert "checkpoint-2 complete    step 2, 8 samples seen; data wiki/train " in text
    assert "checkpoint-4 complete    step 4, 16 samples seen" in text and "incomplete" not in text
    assert "held-out at step 4: eval_loss " in text and "eval_news_loss" in text and "eval_wiki_loss" in text
    assert f"card        {finished_run / 'README.md'}" in text
    rc, raw = _inspect(capsys, str(finished_run), "--json")
    s = json.loads(raw)
    assert rc == 0 and s["finished"] and s["final_step"] == s["last_step"] == 4 and s["data_changes"] == []
    assert [(c["name"], c["complete"], c["samples_seen"]) for c in s["checkpoints"]] == [
        ("checkpoint-2", True, 8), ("checkpoint-4", True, 16)]
    recorded = json.loads((finished_run / "checkpoint-4" / "data.json").read_text())["data"]["splits"]
    assert s["checkpoints"][-1]["data"] == {n: v["fingerprint"] for n, v in recorded.items()}
    assert s["losses"]["train"]["step"] == 4 and s["losses"]["eval"]["step"] == 4
    assert s["resume"]["command"].endswith("--resume_from_checkpoint latest")  # to train on past --max_steps


def test_it_reads_a_run_without_torch_or_transformers(finished_run):
    code = ("import sys\n"
            "for m in ('torch', 'transformers'): sys.modules[m] = None\n"
            "from preprocess.inspect_cache import main\n"
            f"sys.exit(main(['run', {str(finished_run)!r}, '--json']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["finished"] is True


def test_what_is_not_a_run_dir_is_one_line(capsys, tmp_path, finished_run):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    cache = finished_run.parent / "cache"
    for path, says in ((tmp_path / "gone", "no such directory"), (tmp_path / "notes.txt", "a file, not a directory"),
                       (tmp_path / "empty", "not a run dir (no checkpoint-<step> dir"),
                       (cache, f"a cache, not a run dir (mlm-inspect show {cache} describes it)"),
                       (finished_run / "checkpoint-2", f"one checkpoint of a run; give the run's dir: mlm-inspect "
                                                       f"run {finished_run}")):
        assert inspect_main(["run", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_run_killed_inside_a_save_is_reported_then_resumed_by_the_command_it_prints(capsys, tmp_path, bpe_dir):
    """A real SIGKILL of the whole job while a checkpoint is being written; the run was started with relative
    paths from its own dir, and the resume command, pasted into a shell in another dir, finishes it."""
    job = tmp_path / "job"
    _cache(job, bpe_dir, lines=80)
    shutil.copytree(bpe_dir, job / "tok")
    cfg = json.loads((ROOT / "train" / "configs" / "roberta-tiny.json").read_text())
    cfg.update(hidden_size=256, intermediate_size=1024, num_hidden_layers=4)  # a save of ~30 MB: it takes a while
    (job / "mid.json").write_text(json.dumps(cfg))
    args = _flags("tok", "cache", "out", "--config_name", "mid.json", "--max_steps", "40")
    out = job / "out"

    def saving() -> list[Path]:
        """Checkpoints being written after a complete one (a partial dir holding its checkpoint's files)."""
        return [p for p in out.glob(f"{PARTIAL}*") if checkpoints(out) and (p / p.name[len(PARTIAL):]).is_dir()]

    for _ in range(5):  # until a kill lands inside a save (it nearly always does at once)
        resume = ["--resume_from_checkpoint", "latest"] if checkpoints(out) else []
        p = subprocess.Popen([sys.executable, "-m", "train", *args, *resume], cwd=job, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        end = time.monotonic() + 300
        while p.poll() is None and not saving():
            assert time.monotonic() < end, "no save began"
            time.sleep(0.001)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate(timeout=120)
        assert p.returncode in (0, -signal.SIGKILL), err[-2000:]
        if p.returncode and saving():
            break
    partial = saving()[0].name

    rc, text = _inspect(capsys, str(out))
    newest = checkpoints(out)[-1]
    assert rc == 1 and "state       not finished: last step" in text
    assert f"{partial} incomplete  a save that never finished (killed while writing)" in text
    rc, raw = _inspect(capsys, str(out), "--json")
    s = json.loads(raw)
    assert rc == 1 and not s["finished"] and s["final_step"] is None and s["last_step"] == int(newest.name[11:])
    assert {c["name"]: c["complete"] for c in s["checkpoints"]}[partial] is False
    assert all(c["complete"] for c in s["checkpoints"] if c["name"] != partial)
    command = s["resume"]["command"]
    assert command in text and f"--datasets_cache_dir {job / 'cache'}" in command and f"--output_dir {out}" in command
    # --output_dir's card is the newest complete checkpoint's, written when it was committed
    assert f"this is its newest checkpoint's card ({newest.name}," in (out / "README.md").read_text()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}  # as a user's shell: the installed command alone
    r = subprocess.run(command, shell=True, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"removed {partial}" in r.stderr and not list(elsewhere.iterdir())

    rc, raw = _inspect(capsys, str(out), "--json")
    s = json.loads(raw)
    assert rc == 0 and s["finished"] and s["final_step"] == 40
    assert all(c["complete"] for c in s["checkpoints"]) and not list(out.glob(f"{PARTIAL}*"))
    assert "40 optimizer steps" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_moved_run_dir_resumes_where_it_is_now(capsys, tmp_path, bpe_dir):
    """A run dir moved since it trained (scratch to archive): the printed command trains into it, not into the
    dir it left, where it would have started another run or written over one."""
    cache = _cache(tmp_path, bpe_dir)
    old, moved = tmp_path / "old", tmp_path / "moved"
    assert train_main(_flags(str(bpe_dir), str(cache), str(old), "--architecture", "roberta-tiny", "--max_steps",
                             "2", "--save_steps", "1")) == 0
    shutil.move(old, moved)
    (moved / "trainer_state.json").unlink()  # as if killed after its last checkpoint, before the final save
    capsys.readouterr()
    rc, raw = _inspect(capsys, str(moved), "--json")
    resume = json.loads(raw)["resume"]
    assert rc == 1 and f"--output_dir {moved} " in resume["command"] and str(old) not in resume["command"]
    assert f"this dir trained as {old}" in resume["note"]
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    r = subprocess.run(resume["command"], shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (moved / "trainer_state.json").is_file() and not old.exists()
