"""Save on the preemption notice: finish the optimizer step, write a checkpoint, exit with the signal's status.

Slurm sends SIGTERM some time before it kills a job (or SIGUSR1 with
``--signal=USR1@120``); Kubernetes sends SIGTERM. While the Trainer runs, the
first such signal only sets a flag; at the end of the current optimizer step
every rank learns of it (one all-reduce of an int on a CPU process group, so
a rank the signal reached first and one it reached later stop at the same
step), the Trainer saves a checkpoint (an atomic commit, train/checkpoints.py)
and training stops; ``train`` then raises ``Terminated`` and the command
exits 128 + the signal's number (143 for SIGTERM). A second signal exits at
once: the checkpoint being written stays invisible, the last complete one is
kept. DataLoader workers ignore these signals (Slurm signals every process
of the job; a worker killed by it would fail the step that has to finish).

Ctrl-C, too, stops training only at a clean point, the end of a step or of an
evaluation batch, without saving; a second Ctrl-C stops at once
(common/cli.interrupt_at_step_end).
"""

from __future__ import annotations

import atexit
import multiprocessing
import signal
import threading
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from common.cli import interrupt_at_step_end, interrupted, mark_handled, terminate

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def ignore_in_worker() -> None:
    """In a DataLoader worker: leave the preemption signals to the main process."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


_REAPING = False


def reap_workers_at_exit() -> None:
    """In the main process, once: at exit, kill the DataLoader workers still alive. They ignore SIGTERM
    (``ignore_in_worker``) and multiprocessing ends daemonic children at exit with SIGTERM, then waits for
    them without a timeout: a run that stopped on an error while its workers ran never exited. Registered
    after multiprocessing's own exit function, so it runs before it."""
    global _REAPING
    if not _REAPING:
        _REAPING = True
        atexit.register(_kill_daemonic_children)


def _kill_daemonic_children() -> None:
    children = [c for c in multiprocessing.active_children() if c.daemon]
    if children:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would report each one "killed by signal"
        for child in children:
            child.kill()
            child.join()


class SaveOnSignal(TrainerCallback):
    """While installed (``with``): the first SIGTERM/SIGUSR1 becomes a save and a stop at the end of the
    optimizer step, agreed by every rank; ``received`` names it after training."""

    def __init__(self) -> None:
        self._restore_ctrl_c: Any = lambda: None
        self.pending = 0  # the signal this process got, 0: none
        self.received = 0  # the signal training stopped for, agreed across ranks
        self._previous: dict[int, Any] = {}
        self._group: Any = None

    def __enter__(self) -> SaveOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        self._restore_ctrl_c = interrupt_at_step_end()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # a CPU group: agreeing on the flag must not make a GPU step wait
            self._group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
            self._distributed = True
        else:
            self._distributed = False
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
        self._restore_ctrl_c()
        if exc[0] is None and interrupted():  # Ctrl-C after the last step's end: stop here, as it asked
            raise KeyboardInterrupt

    def _on_signal(self, signum: int, frame: object) -> None:
        mark_handled(signum)
        if self.pending:  # the second: at once (a checkpoint being written stays invisible)
            terminate(signum)
        self.pending = signum

    def _stop_if_interrupted(self, *args: Any, **kwargs: Any) -> None:
        """Where Ctrl-C stops training (common/cli.interrupt_at_step_end): a clean point, between steps and
        between evaluation batches, not inside a lock or a half-written file of some library."""
        if interrupted():
            raise KeyboardInterrupt

    on_substep_end = on_prediction_step = _stop_if_interrupted

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._stop_if_interrupted()
        flag = self.pending
        if self._distributed:
            t = torch.tensor([flag], dtype=torch.int64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._group)
            flag = int(t.item())
        if flag:
            self.received = flag
            control.should_save = True
            control.should_training_stop = True
        return control
