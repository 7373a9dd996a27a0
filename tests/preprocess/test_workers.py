"""The forked worker pool (preprocess/workers.py): a worker that dies is reported as such, whatever the
pipe says when it does."""

from __future__ import annotations

import os
import signal

import pytest

from preprocess.workers import WorkerDied, Workers


def _die_on_two(task: int) -> int:
    if task == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
    return task * 10


@pytest.mark.parametrize("repeat", range(10))
def test_a_worker_killed_with_tasks_unread_is_worker_died(repeat):
    """Killed with the next tasks still unread in its socket, its end resets (ECONNRESET) rather than
    closing; sending it more breaks the pipe. Either must be WorkerDied: a ConnectionResetError was a
    traceback, and a BrokenPipeError would pass for a reader gone (`| head`) and exit quietly."""
    workers = Workers(2, _die_on_two)
    try:
        with pytest.raises(WorkerDied, match=r"killed: out of memory\?"):
            for _ in workers.imap(range(40), per_worker=4):
                pass
    finally:
        workers.kill()
