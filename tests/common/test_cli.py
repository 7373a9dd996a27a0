"""Every command ends the same way: one ``error:`` line and exit 2 for a user's mistake,
130 for Ctrl-C, 143 for SIGTERM, and silence when the reader of its output goes away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import Terminated, run_command
from common.errors import UserError
from preprocess.__main__ import main as preprocess_main
from preprocess.inspect_cache import main as inspect_main
from preprocess.train_tokenizer import main as train_tokenizer_main
from run_mlm import main as run_mlm_main
from tests.corpus import write_shards
from tests.preprocess.helpers import base_args, run_cli
from train.__main__ import main as train_main

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("raised,status,said", [
    (UserError("bad flag"), 2, "error: bad flag"),
    (KeyboardInterrupt(), 130, "interrupted: what now"),
    (Terminated(), 143, "terminated (SIGTERM): what now"),
])
def test_run_command_maps_each_ending(capsys, raised, status, said):
    def body() -> int:
        raise raised

    assert run_command(body, "what now") == status
    assert capsys.readouterr().err.strip() == said


@pytest.mark.parametrize("signum,status,said", [
    (signal.SIGINT, 130, "interrupted: what now"),
    (signal.SIGTERM, 143, "terminated (SIGTERM): what now"),
])
def test_a_signal_that_breaks_the_code_it_lands_in_still_ends_as_that_signal(capsys, signum, status, said):
    """tqdm's write, Ctrl-C'd between its lock's acquire and release, raised RuntimeError in place of the
    KeyboardInterrupt: the run ended in a traceback, exit 1, without saying where to resume."""
    from tqdm import tqdm

    class Interrupted:  # a lock whose acquire the signal lands in
        def acquire(self, *a: object, **k: object) -> None:
            os.kill(os.getpid(), signum)

        def release(self) -> None:
            pass

    def body() -> int:
        bar = tqdm(total=2, disable=False, file=sys.stderr)
        real = tqdm.get_lock().locks
        tqdm.get_lock().locks = [Interrupted(), *real[1:]]
        try:
            bar.write("logged")
        finally:
            tqdm.get_lock().locks = real
        return 0

    def failing() -> int:
        raise RuntimeError("not after a signal")

    # Ctrl-C as at a terminal: a test run started as a background job (nohup make test &) ignores SIGINT,
    # and run_command rightly leaves an ignored Ctrl-C ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_command(body, "what now") == status
        assert said in capsys.readouterr().err
        with pytest.raises(RuntimeError, match="not after a signal"):  # the signal is forgotten by the next command
            run_command(failing, "what now")
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_as_the_command_starts_is_the_interrupt_line_not_a_traceback(capsys, monkeypatch):
    """Ctrl-C in the first instants landed in the watchdog's thread start, before the code that turns it into
    the one-line message (a hostile run: 3 of 20 SIGINTs in the first 0.7 s)."""
    from common import cli

    def started_then_interrupted():
        raise KeyboardInterrupt  # where the signal landed

    monkeypatch.setattr(cli, "_watchdog", started_then_interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_command(lambda: 0, "what now") == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "interrupted: what now" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is not cli._raise_terminated  # every handler put back


def test_every_command_says_a_users_mistake_in_one_line(capsys, tmp_path):
    missing = str(tmp_path / "nowhere")
    for main, argv in [
        (preprocess_main, ["--tokenizer_name_or_path", missing, "--train_dir", missing, "--datasets_cache_dir", missing]),
        (train_main, ["--tokenizer_name_or_path", missing, "--datasets_cache_dir", missing, "--output_dir", missing]),
        (run_mlm_main, ["--tokenizer_name_or_path", missing, "--datasets_cache_dir", missing, "--output_dir", missing]),
        (inspect_main, ["show", missing]),
        (train_tokenizer_main, ["--type", "newmm", "--train_dir", missing, "--output_dir", missing]),
    ]:
        assert main(argv) == 2, main
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("note:", "WARNING"))]
        assert len(err) == 1 and err[0].startswith("error: "), (main, err)


def test_a_closed_pipe_ends_inspect_quietly(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=400, lines_per_shard=2)  # a JSON manifest past the 64 KiB a pipe holds
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, cache))[0] == 0
    p = subprocess.Popen([sys.executable, "-m", "preprocess.inspect_cache", "show", str(cache), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    p.stdout.read(10)
    p.stdout.close()  # the reader goes away, as `| head -c 10` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == ""


def test_help_docstrings_and_readme_agree_that_training_reads_the_cache_by_pread(capsys):
    """mlm-train --help said it memory-maps the cache; it reads blocks with pread and maps nothing
    (common/reader.py), and the README says why: bounded descriptors, no SIGBUS when a file is cut under a job."""
    import preprocess
    import train

    helps = {}
    for name, main in (("mlm-train", train_main), ("mlm-preprocess", preprocess_main)):
        try:
            rc = main(["--help"])
        except SystemExit as e:  # argparse's --help
            rc = e.code
        assert rc in (0, None)
        helps[name] = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (helps["mlm-train"], train.__doc__):
        assert "pread" in text and "memory-map" not in text, text
    for text in (helps["mlm-preprocess"], preprocess.__doc__, readme):
        assert "memory-map" not in text, text
    assert "maps nothing" in readme and "docs/format.md" in readme
    reference = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")  # the why, in the format reference
    assert all(why in reference for why in ("pread", "never memory-maps", "descriptor", "SIGBUS")), reference
