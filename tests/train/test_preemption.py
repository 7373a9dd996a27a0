"""A long run survives what clusters do to it: kills mid-save, a preemption notice, a cache rebuilt under
it, a resume on other data (issue 19). Each through mlm-train in a process of its own, signalled as
Slurm signals: the whole process group (DataLoader workers included)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from preprocess.__main__ import main as preprocess_main
from tests.corpus import write_shards
from train.__main__ import main as train_main
from train.checkpoints import PARTIAL, checkpoints, unusable

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def build(tmp_path: Path, tok: Path, n_shards: int = 4, lines: int = 40, *flags: str) -> Path:
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=n_shards, lines_per_shard=lines)
    assert preprocess_main(["--tokenizer_name_or_path", str(tok), "--train_dir", str(text), "--datasets_cache_dir",
                            str(cache), "--max_seq_length", "32", "--num_workers", "1", *flags]) == 0
    return cache


def train_args(tok: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", "32",
            "--architecture", "roberta-tiny", "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1", "--seed", "3", *extra]


def start(args: list[str]) -> subprocess.Popen:
    """mlm-train in a session of its own, so a signal can go to its whole process group, as Slurm's does."""
    return subprocess.Popen([sys.executable, "-m", "train", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def run(args: list[str]) -> subprocess.CompletedProcess:
    """mlm-train to its end in a process like ``start``'s (same threads: the same floats)."""
    r = subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def wait_for(cond, timeout: float = 120.0, every: float = 0.01) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(every)


def losses(out: Path) -> dict[int, float]:
    """Every logged training loss of a run, by step, from its newest trainer_state.json."""
    states = [out / "trainer_state.json", *[c / "trainer_state.json" for c in reversed(checkpoints(out))]]
    state = json.loads(next(p for p in states if p.is_file()).read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)])
def test_a_preemption_signal_saves_at_the_current_step_and_the_resume_is_exact(tmp_path, bpe_dir, sig):
    cache = build(tmp_path, bpe_dir)
    full = tmp_path / "full"
    run(train_args(bpe_dir, cache, full, "--max_steps", "40", "--save_strategy", "no"))
    cut = tmp_path / "cut"
    args = train_args(bpe_dir, cache, cut, "--max_steps", "40", "--save_steps", "1000",
                      "--dataloader_num_workers", "2")
    p = start(args)
    seen = []
    for line in p.stdout:  # the Trainer prints each logged step
        seen.append(line)
        if "'loss'" in line and len([x for x in seen if "'loss'" in x]) >= 5:
            os.killpg(p.pid, sig)  # every process of the job, as Slurm signals it
            break
    out, err = p.communicate(timeout=300)
    assert p.returncode == 128 + sig, err[-2000:]
    assert f"terminated ({signal.Signals(sig).name})" in err and "--resume_from_checkpoint latest" in err
    (saved,) = checkpoints(cut)  # one checkpoint, complete, at the step the signal came
    step = int(saved.name.split("-")[1])
    assert 5 <= step < 40 and unusable(saved) is None
    assert not list(cut.glob(f"{PARTIAL}*"))
    run([*train_args(bpe_dir, cache, cut, "--max_steps", "40", "--save_steps", "1000"), "--resume_from_checkpoint",
         "latest"])
    before, after = losses(full), losses(cut)
    assert {k: v for k, v in after.items() if k > step} == {k: v for k, v in before.items() if k > step}
    assert same_weights(full, cut)


def test_a_second_signal_exits_at_once_leaving_only_complete_checkpoints(tmp_path, bpe_dir):
    cache = build(tmp_path, bpe_dir)
    out = tmp_path / "out"
    p = start(train_args(bpe_dir, cache, out, "--max_steps", "100000", "--save_steps", "3"))
    wait_for(lambda: len(checkpoints(out)) >= 1)
    os.killpg(p.pid, signal.SIGTERM)
    os.killpg(p.pid, signal.SIGUSR1)  # another signal: two of one kind may reach the process as one
    _, err = p.communicate(timeout=300)
    assert p.returncode in (138, 143) and "terminated (SIG" in err
    assert checkpoints(out) and all(unusable(c) is None for c in checkpoints(out))
    # no save at the step the signals came: the newest checkpoint is one of --save_steps 3's
    assert all(int(c.name.split("-")[1]) % 3 == 0 for c in checkpoints(out))


def test_resume_on_changed_data_is_refused_in_one_line_and_allowed_with_the_flag(capsys, tmp_path, bpe_dir):
    cache = build(tmp_path, bpe_dir)
    out = tmp_path / "out"
    args = train_args(bpe_dir, cache, out, "--max_steps", "4", "--save_steps", "2")
    assert train_main(args) == 0
    edited = tmp_path / "text" / "shard_001.txt"
    edited.write_text(edited.read_text() + "an added line\n")
    (tmp_path / "text" / "shard_009.txt").write_text("a new shard\n")
    assert preprocess_main(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(tmp_path / "text"),
                            "--datasets_cache_dir", str(cache), "--max_seq_length", "32"]) == 0
    longer = [a if a != "4" else "6" for a in args]
    capsys.readouterr()
    assert train_main([*longer, "--resume_from_checkpoint", "latest"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "checkpoint-4 was trained on other data" in err[0]
    assert "1 shard added (shard_009.txt), 1 shard changed (shard_001.txt)" in err[0] and "--allow_data_change" in err[0]
    assert train_main([*longer, "--resume_from_checkpoint", "latest", "--allow_data_change"]) == 0
    assert "--allow_data_change: continuing from step 4 on other data" in capsys.readouterr().err
    history = json.loads((out / "provenance.json").read_text())["data"]
    assert [(h.get("from_step"), h["until_step"]) for h in history] == [(None, 4), (4, 6)]
    assert history[0]["data"]["splits"]["train"]["shards"] == 4 and history[1]["data"]["splits"]["train"]["shards"] == 5
    assert history[0]["data"]["splits"]["train"]["fingerprint"] != history[1]["data"]["splits"]["train"]["fingerprint"]


def test_a_damaged_checkpoint_named_explicitly_is_one_line_and_latest_skips_an_incomplete_one(capsys, tmp_path,
                                                                                             bpe_dir):
    cache = build(tmp_path, bpe_dir)
    out = tmp_path / "out"
    args = train_args(bpe_dir, cache, out, "--max_steps", "4", "--save_steps", "2")
    assert train_main(args) == 0
    # what a kill leaves: a partial save, and a checkpoint of an older version without its state
    (out / f"{PARTIAL}checkpoint-6" / "checkpoint-6").mkdir(parents=True)
    (out / "checkpoint-8").mkdir()
    (out / "checkpoint-8" / "config.json").write_text("{}")
    capsys.readouterr()
    assert train_main([*args, "--resume_from_checkpoint", str(out / "checkpoint-8")]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "cannot resume from it: no readable trainer_state.json" in err[0]
    longer = [a if a != "4" else "6" for a in args]
    assert train_main([*longer, "--resume_from_checkpoint", "latest"]) == 0
    err = capsys.readouterr().err
    assert f"removed {PARTIAL}checkpoint-6, checkpoint-8 from {out}: incomplete" in err
    assert [c.name for c in checkpoints(out)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]


@pytest.mark.slow  # 20 s: a job long enough to be running when the cache is rebuilt
def test_a_cache_rebuilt_under_a_running_job_keeps_its_pieces_until_the_job_ends(tmp_path, bpe_dir):
    cache = build(tmp_path, bpe_dir, 12, 14, "--task_size_mb", "0.002")  # 12 pieces
    base = ["--max_steps", "150", "--save_strategy", "no", "--dataloader_num_workers", "2",
            "--per_device_train_batch_size", "16"]
    quiet = tmp_path / "quiet"
    run(train_args(bpe_dir, cache, quiet, *base))
    busy = tmp_path / "busy"
    p = start(train_args(bpe_dir, cache, busy, *base))
    wait_for(lambda: list((cache / "readers").glob("*.json")))
    time.sleep(1.0)
    for shard in sorted((tmp_path / "text").glob("*.txt")):  # every piece changes
        shard.write_text(shard.read_text() + "one more line\n")
    r = subprocess.run([sys.executable, "-m", "preprocess", "--tokenizer_name_or_path", str(bpe_dir), "--train_dir",
                        str(tmp_path / "text"), "--datasets_cache_dir", str(cache), "--max_seq_length", "32",
                        "--num_workers", "1", "--task_size_mb", "0.002"], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert p.poll() is None, "the job must still be training when the cache is rebuilt"
    shown = subprocess.run([sys.executable, "-m", "preprocess.inspect_cache", "show", str(cache / "train")], cwd=ROOT,
                           env=ENV, capture_output=True, text=True, timeout=120).stdout
    assert f"readers    training jobs reading it (a preprocess rerun keeps their pieces): pid {p.pid} on" in shown
    assert f"kept 12 pieces the new manifest no longer names: a training job reads them (pid {p.pid} on" in r.stderr
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    assert losses(busy) == losses(quiet)  # the job trained on the data it started with, undisturbed
    pieces = cache / "train" / "pieces"
    assert len(list(pieces.glob("*.tokens.npy"))) == 24  # the job's 12 and the new 12
    assert preprocess_main(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(tmp_path / "text"),
                            "--datasets_cache_dir", str(cache), "--max_seq_length", "32", "--num_workers", "1",
                            "--task_size_mb", "0.002"]) == 0
    assert len(list(pieces.glob("*.tokens.npy"))) == 12 and not list((cache / "readers").glob("*.json"))


@pytest.mark.slow
def test_ten_kills_at_random_moments_some_inside_saves_and_the_run_still_ends_exactly(tmp_path, bpe_dir):
    """SIGKILL of the whole process tree, 10 times, half of them as a checkpoint is being written; each
    followed by --resume_from_checkpoint latest. The weights at the end equal an uninterrupted run's."""
    cfg = json.loads((ROOT / "train" / "configs" / "roberta-tiny.json").read_text())
    cfg.update(hidden_size=256, intermediate_size=1024, num_hidden_layers=4)  # a save of ~30 MB: it takes a while
    (tmp_path / "mid.json").write_text(json.dumps(cfg))
    cache = build(tmp_path, bpe_dir, 4, 60)
    # long enough that 10 kills come before the end however fast this machine is (a run that reached it
    # has nothing to do, and no save to be killed inside)
    base = ["--max_steps", "60", "--save_steps", "2", "--save_total_limit", "2", "--config_name",
            str(tmp_path / "mid.json")]
    full = tmp_path / "full"
    run(train_args(bpe_dir, cache, full, *base))
    out = tmp_path / "out"
    rng = random.Random(7)
    inside, own_ends = 0, []
    for k in range(10):
        resume = ["--resume_from_checkpoint", "latest"] if checkpoints(out) else []
        p = start(train_args(bpe_dir, cache, out, *base, *resume))
        if k % 2:  # at the moment a save begins
            wait_for(lambda p=p: p.poll() is not None or list(out.glob(f"{PARTIAL}*")), every=0.001)
            inside += p.poll() is None
        else:
            time.sleep(rng.uniform(2.0, 6.0))
        ended = p.poll()
        if ended is None:
            os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate(timeout=120)
        if ended is not None:
            own_ends.append(f"run {k} ended by itself with {ended}: {err[-500:]}")
        assert all(unusable(c) is None for c in checkpoints(out)), "a visible checkpoint must be complete"
    assert inside >= 3, own_ends
    resume = ["--resume_from_checkpoint", "latest"] if checkpoints(out) else []
    p = start(train_args(bpe_dir, cache, out, *base, *resume))
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    assert same_weights(full, out)


@pytest.mark.slow
def test_under_torchrun_a_signal_to_one_rank_stops_both_at_the_same_step(tmp_path, bpe_dir):
    """Slurm's notice may reach one rank first: the other learns of it at the end of the same optimizer
    step (without agreement it would wait forever in the next step's gradient all-reduce)."""
    import psutil

    cache = build(tmp_path, bpe_dir)
    out = tmp_path / "out"
    args = train_args(bpe_dir, cache, out, "--max_steps", "100000", "--save_steps", "100000")
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "train",
                          *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    logged = 0
    for line in p.stdout:
        logged += "'loss'" in line
        if logged >= 3:
            break
    ranks = {int(c.environ().get("RANK", -1)): c for c in psutil.Process(p.pid).children(recursive=True)
             if c.environ().get("RANK") is not None and c.environ().get("LOCAL_RANK") is not None}
    ranks[1].send_signal(signal.SIGUSR1)  # rank 1 only
    try:
        _, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:  # ranks that disagree hang in the next step's all-reduce
            os.killpg(p.pid, signal.SIGKILL)
    (saved,) = checkpoints(out)
    assert unusable(saved) is None, err[-3000:]
    assert (saved / "rng_state_0.pth").is_file() and (saved / "rng_state_1.pth").is_file()
    assert "terminated (SIGUSR1)" in err
    step = json.loads((saved / "trainer_state.json").read_text())["global_step"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "train",
                        *[a if a != "100000" else str(step + 3) for a in args], "--resume_from_checkpoint",
                        "latest"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == step + 3


def test_a_cache_where_no_lease_can_be_written_still_trains_with_a_note(capsys, tmp_path, bpe_dir):
    cache = build(tmp_path, bpe_dir)
    (cache / "readers").write_text("not a dir")  # stands for a read-only mount (root writes anywhere)
    assert train_main(train_args(bpe_dir, cache, tmp_path / "out", "--max_steps", "1")) == 0
    assert "so this job holds no lease on the pieces it reads" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_ends_a_rank_blocked_waiting_for_a_peer_that_never_comes(tmp_path, bpe_dir):
    """Blocked in C (the rendezvous of a 2-rank job whose other rank never starts), the main thread never
    runs the Python handler: the watchdog sees the signal and ends the process after STUCK_S."""
    import socket

    from common.cli import STUCK_S

    cache = build(tmp_path, bpe_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "2"}
    p = subprocess.Popen([sys.executable, "-m", "train", *train_args(bpe_dir, cache, tmp_path / "out",
                                                                        "--max_steps", "2")],
                         cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(8)
    assert p.poll() is None, "the rank must be waiting for its peer"
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=STUCK_S + 60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 143 and err.count("terminated (SIGTERM): no response for") == 1


def test_a_signal_the_main_thread_took_never_ends_a_long_save(tmp_path):
    """The watchdog ends only a process whose handlers do not run: a handled signal followed by a save longer
    than STUCK_S (a big model, a slow disk) must go on (the thread read the signal after the handler ran)."""
    script = tmp_path / "busy.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "from common import cli\n"
        "cli.STUCK_S = 1.0\n"
        "def body():\n"
        "    signal.signal(signal.SIGUSR1, lambda s, f: cli.mark_handled(s))\n"
        "    os.kill(os.getpid(), signal.SIGUSR1)\n"
        "    end = time.monotonic() + 4\n"
        "    while time.monotonic() < end:  # Python keeps running: a save in progress\n"
        "        sum(range(1000))\n"
        "    return 0\n"
        "sys.exit(cli.run_command(body, 'stopped'))\n")
    r = subprocess.run([sys.executable, str(script)], env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "no response" not in r.stderr, r.stderr


def test_best_model_at_end_names_a_real_checkpoint_and_model_only_checkpoints_are_not_resumed(capsys, tmp_path,
                                                                                              bpe_dir):
    text, ev, cache = tmp_path / "text", tmp_path / "ev", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=40)
    write_shards(ev, n_shards=1, lines_per_shard=20, seed=4)
    assert preprocess_main(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(text), "--eval_dir", str(ev),
                            "--datasets_cache_dir", str(cache), "--max_seq_length", "32"]) == 0
    out = tmp_path / "best"
    assert train_main(train_args(bpe_dir, cache, out, "--max_steps", "4", "--save_steps", "2", "--eval_strategy",
                                 "steps", "--eval_steps", "2", "--load_best_model_at_end", "true",
                                 "--metric_for_best_model", "eval_loss", "--save_total_limit", "1")) == 0
    best = json.loads((out / "trainer_state.json").read_text())["best_model_checkpoint"]
    assert Path(best).parent == out and Path(best).name.startswith("checkpoint-") and Path(best).is_dir()
    only = tmp_path / "only"
    args = train_args(bpe_dir, cache, only, "--max_steps", "2", "--save_steps", "2", "--save_only_model", "true")
    assert train_main(args) == 0
    capsys.readouterr()
    assert train_main([*[a if a != "2" else "4" for a in args], "--resume_from_checkpoint", "latest"]) == 2
    assert "holds the model only (saved with --save_only_model)" in capsys.readouterr().err


def test_a_second_job_into_the_same_output_dir_is_refused(capsys, tmp_path, bpe_dir):
    from train.checkpoints import output_lock

    cache = build(tmp_path, bpe_dir)
    out = tmp_path / "out"
    with output_lock(out, hold=True):  # a job training into it (the kernel's flock: another process's alike)
        r = subprocess.run([sys.executable, "-m", "train", *train_args(bpe_dir, cache, out, "--max_steps", "1")],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and f"--output_dir {out} is being trained into by another job (pid {os.getpid()}" in r.stderr
    assert train_main(train_args(bpe_dir, cache, out, "--max_steps", "1")) == 0  # once it ended


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_training_at_the_end_of_the_step_and_twice_at_once(capfd, monkeypatch, tmp_path, bpe_dir,
                                                                        presses):
    """A KeyboardInterrupt raised wherever the main thread was could land in a finalizer, where Python drops
    it with a traceback ("Exception ignored in ...") and training went on, or inside a library's lock, which
    then failed with its own error in its place. Ctrl-C now stops training at the end of the step it came
    in, where the Trainer is between steps: exit 130, the interrupted line, no traceback, even from inside
    a finalizer. A second Ctrl-C stops at once, in the middle of the step."""
    from train.run import MlmTrainer

    cache = build(tmp_path, bpe_dir)
    original = MlmTrainer.compute_loss
    steps: list[int] = []
    computed: list[int] = []

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # its handler runs in this frame, at the next bytecode
        for _ in range(1000):
            pass

    class Finalized:
        def __del__(self) -> None:
            ctrl_c()

    def compute_loss(self, *a, **kw):
        steps.append(self.state.global_step)
        if len(steps) == 3:
            Finalized()  # collected at once: the first Ctrl-C comes inside a finalizer
            if presses == 2:
                ctrl_c()
        loss = original(self, *a, **kw)
        computed.append(self.state.global_step)
        return loss

    dropped: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))  # where Python drops it
    monkeypatch.setattr(MlmTrainer, "compute_loss", compute_loss)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    try:
        rc = train_main(train_args(bpe_dir, cache, tmp_path / "out", "--max_steps", "40", "--save_strategy", "no"))
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capfd.readouterr().err
    assert rc == 130 and "interrupted: stopped; no checkpoint was saved" in err, (rc, err[-2000:])
    assert "stopping at the end of this step (Ctrl-C again stops at once)" in err
    assert len(steps) == 3 and "Traceback" not in err and dropped == []
    assert len(computed) == (3 if presses == 1 else 2)  # one: the step finished; two: it stopped mid-step
