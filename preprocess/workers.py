"""Forked worker processes, one pipe each: results in task order, a dead worker noticed at once.

``multiprocess.Pool`` shares one task queue whose lock an idle worker holds
while it waits for work. A worker killed then (SIGTERM to the process group,
as Slurm and ``timeout`` send it; the OOM killer) takes the lock with it, and
the pool's shutdown, like every later task, waits forever. Here each worker
has its own duplex pipe and the parent waits on the pipes and the workers'
sentinels together: a death is an error, not a hang, and stopping is killing.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from common.cli import Terminated


class WorkerDied(Exception):
    """A worker process ended without being asked to (killed, out of memory)."""


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), and die now if it already has.

    A worker inherits the parent's cache-lock descriptor and its siblings'
    pipe ends: after a SIGKILL of the parent, an orphan would hold the lock
    (every rerun refused) and never see its pipe close.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipe's EOF still ends an idle worker
        pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


def _serve(conn: Any, fn: Callable[[Any], Any], parent: int) -> None:
    """A worker's life: run ``fn`` on each ``(index, task)`` received; None ends it."""
    die_with_parent(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # die on SIGTERM: the parent cleans up
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            msg = _loads(conn.recv_bytes())
        except EOFError:  # the parent is gone
            return
        if msg is None:
            return
        index, task = msg
        try:
            reply = (index, True, fn(task))
        except Exception as e:  # noqa: BLE001 - re-raised in the parent, in task order
            reply = (index, False, e)
        conn.send_bytes(_dumps(reply))


def _dumps(obj: Any) -> bytes:
    """A task or reply pickled by the standard library's C pickler, tagged ``p``: multiprocess's own
    ``send`` pickles with dill's pure-Python pickler, 30x slower on a task's lines (0.03 s for 7,000 of
    them), and it spent 0.24 s sending the 471 tasks of the bench's 5 MB sample. What only dill can
    pickle (a closure in an exception) goes as dill, tagged ``d``."""
    try:
        return b"p" + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - PicklingError, or TypeError/AttributeError for a local object
        import dill

        return b"d" + dill.dumps(obj)


def _loads(data: bytes) -> Any:
    if data[:1] == b"p":
        return pickle.loads(data[1:])
    import dill

    return dill.loads(data[1:])


class Workers:
    """``n`` forked processes running ``fn``; they inherit the parent's state at fork (a loaded tokenizer)."""

    def __init__(self, n: int, fn: Callable[[Any], Any]):
        import multiprocess  # only when there is work: a fresh rerun must not pay for dill's import

        ctx = multiprocess.get_context("fork")
        self.procs, self.conns = [], []
        for _ in range(n):
            parent, child = ctx.Pipe(duplex=True)
            p = ctx.Process(target=_serve, args=(child, fn, os.getpid()), daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)

    def imap(self, tasks: Iterable[Any], per_worker: int = 2) -> Iterator[Any]:
        """``fn(task)`` for each task, in order, with at most ``per_worker`` x n tasks sent or unread.

        The bound keeps the parent's memory flat when it (writing) is slower than
        the workers (peak RSS grew with the corpus when every task was submitted
        at once). A worker's exception is raised here, at its task's turn.
        """
        window = per_worker * len(self.procs)
        todo = iter(enumerate(tasks))
        busy = [0] * len(self.procs)
        done: dict[int, tuple[bool, Any]] = {}
        sent = next_out = 0
        exhausted = False
        while True:
            while not exhausted and sent - next_out < window:
                w = min(range(len(busy)), key=busy.__getitem__)
                item = next(todo, None)
                if item is None:
                    exhausted = True
                    break
                try:
                    self.conns[w].send_bytes(_dumps(item))
                except (BrokenPipeError, ConnectionResetError):  # it died: say so, never as a reader gone
                    self._died(w)  # (run_command takes a BrokenPipeError for `| head` and exits quietly)
                busy[w] += 1
                sent += 1
            if next_out in done:
                ok, value = done.pop(next_out)
                next_out += 1
                if not ok:
                    raise value
                yield value
                continue
            if exhausted and next_out == sent:
                return
            self._receive(busy, done)

    def _receive(self, busy: list[int], done: dict[int, tuple[bool, Any]]) -> None:
        from multiprocess.connection import wait

        sentinels = {p.sentinel: k for k, p in enumerate(self.procs)}
        for ready in wait([*self.conns, *sentinels]):
            if ready in sentinels:
                self._died(sentinels[ready])
            k = self.conns.index(ready)
            try:
                index, ok, value = _loads(ready.recv_bytes())
            except (EOFError, ConnectionResetError):  # its end closed, or reset (it died with a task unread)
                self._died(k)
            busy[k] -= 1
            done[index] = (ok, value)

    def _died(self, k: int) -> None:
        p = self.procs[k]
        p.join()
        if p.exitcode == -signal.SIGTERM:  # the process group was told to stop (Slurm, timeout)
            raise Terminated
        raise WorkerDied(f"a tokenizer worker (pid {p.pid}) died with exit code {p.exitcode}"
                         f"{' (killed: out of memory?)' if p.exitcode == -signal.SIGKILL else ''}")

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Asked to end when the block ran through; killed on an error or a signal: a worker blocked sending
        a reply nobody reads any more would not end (``close`` waited 5 s on each), and none may outlive the
        run."""
        if exc_type is None:
            self.close()
        else:
            self.kill()

    def close(self) -> None:
        """Ask every worker to end and wait for it; kill any that will not."""
        for conn in self.conns:
            try:
                conn.send_bytes(_dumps(None))
            except OSError:  # already gone
                pass
        for p in self.procs:
            p.join(timeout=5)
        self.kill()

    def kill(self) -> None:
        for p in self.procs:
            if p.exitcode is None:
                os.kill(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.join()
        for conn in self.conns:
            conn.close()


@contextmanager
def meanwhile(prepare: Callable[[], object] | None) -> Iterator[None]:
    """Run ``prepare`` on a thread for the length of the block, and raise what it raised at its end: work for
    this process while its workers, or a library that releases the GIL, use the cores. Enter it after every
    fork of the block, and leave it before the next: a child forked while the thread holds a lock (an
    import's) would wait on it forever."""
    if prepare is None:
        yield
        return
    failed: list[BaseException] = []

    def run() -> None:
        try:
            prepare()
        except BaseException as e:  # noqa: BLE001 - raised again below, in the main thread
            failed.append(e)

    thread = threading.Thread(target=run, name="meanwhile", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failed:
        raise failed[0]
