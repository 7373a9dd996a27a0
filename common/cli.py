"""Argument parsing from a documented dataclass, without importing transformers.

``HfArgumentParser`` does the same but its import costs about 0.9 s here
(transformers, and torch when installed): more than a whole no-op preprocess
rerun should take. The train stage, which needs transformers anyway, parses
the same dataclasses with ``HfArgumentParser``, so flags match exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import types
import typing
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from common.errors import UserError, words

T = TypeVar("T")


class CliError(ValueError):
    """A bad command line: the caller prints it as one line, without argparse's usage block."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise CliError(message)


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "y", "t"):
        return True
    if low in ("0", "false", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _base_type(hint: Any) -> Any:
    """``str | None`` -> ``str``; plain types unchanged."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0]
    return hint


def dataclass_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """One ``--name`` per field: required without a default, help from ``metadata["help"]``."""
    parser = _Parser(prog=prog, description=description, allow_abbrev=False)  # --over is not --overwrite_cache
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if kind is bool:
            parser.add_argument(f"--{f.name}", type=_bool, nargs="?", const=True, default=f.default, help=help_text)
        elif has_default:
            default = f.default if f.default is not dataclasses.MISSING else None  # factories run in the dataclass
            suffix = f" (default: {default})" if default is not None and "default" not in help_text else ""
            parser.add_argument(f"--{f.name}", type=kind, default=argparse.SUPPRESS if default is None else default,
                                help=help_text + suffix)
        else:
            parser.add_argument(f"--{f.name}", type=kind, required=True, help=help_text)
    return parser


INPUT_FLAGS = ("train_dir", "eval_dir")  # a second one is meant as more text, not as a correction


def merge_repeated(argv: list[str]) -> tuple[list[str], list[str]]:
    """(``argv`` with every repeated input-dir flag merged into one, notes), never dropping a value
    silently: argparse keeps a repeated flag's last value and drops the others.

    ``--train_dir a --train_dir b`` becomes ``--train_dir a,b`` (both dirs are
    read); any other flag given twice gets a note naming the value that counts
    (a command with an override appended, ``... --max_steps 10``, keeps working).
    """
    seen: dict[str, list[str]] = {}
    where: dict[str, list[tuple[int, int]]] = {}  # flag -> (index, tokens it takes) of each occurrence
    for i, a in enumerate(argv):
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            takes = not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            value = value if eq else (argv[i + 1] if takes else "")
            key = name.replace("-", "_")
            seen.setdefault(key, []).append(value)
            where.setdefault(key, []).append((i, 2 if takes else 1))
    firsts = {where[n][0][0]: n for n in INPUT_FLAGS if len(where.get(n, [])) > 1}
    skip = {i + k for n in firsts.values() for i, taken in where[n] for k in range(taken)}
    out = [f"--{firsts[i]}={','.join(seen[firsts[i]])}" if i in firsts else a
           for i, a in enumerate(argv) if i in firsts or i not in skip]
    notes = [f"note: --{name} is given {len(values)} times; the last ({values[-1]!r}) counts"
             for name, values in seen.items() if len(values) > 1 and name not in INPUT_FLAGS]
    return out, notes


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with repeated flags merged or noted (``merge_repeated``)."""
    argv, notes = merge_repeated(argv)
    for note in notes:
        print(note, file=sys.stderr)
    return parser.parse_args(argv)


def parse_dataclass(cls: type[T], argv: list[str], prog: str, description: str) -> T:
    """Flags, or one JSON file of the same keys; unknown or repeated flags or keys exit with an error (strict)."""
    parser = dataclass_parser(cls, prog, description)
    if len(argv) == 1 and argv[0].endswith(".json"):
        argv = _json_as_flags(cls, argv[0])
    return cls(**vars(parse_args(parser, argv)))


def read_config(path: str) -> dict[str, Any]:
    """A JSON config file of flag names and values; CliError saying why it cannot be one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CliError(f"{path}: cannot read the config ({e})") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: a config must be one JSON object of flag names and values")
    return data


def _json_as_flags(cls: type, path: str) -> list[str]:
    """A JSON config as the flags it stands for, each value of its field's type: then the file and the
    flags go through one parser ("false" is not a bool, "128" is not an int)."""
    data = read_config(path)
    hints = typing.get_type_hints(cls)
    known = {fl.name for fl in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CliError(f"{path}: unknown keys {unknown}")
    argv: list[str] = []
    for key, value in data.items():
        kind = _base_type(hints[key])
        if value is None:
            continue
        ok = isinstance(value, bool) if kind is bool else (
            not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else kind))
        if not ok:
            raise CliError(f"{path}: {key} must be {getattr(kind, '__name__', kind)}, found {json.dumps(value)}")
        argv += [f"--{key}", str(value).lower() if kind is bool else str(value)]
    return argv


def _stopped(signum: int, after_stop: str | Callable[[], str]) -> int:
    """Say that a signal stopped the command, and what now; the exit status a shell gives it (128 + signum)."""
    said = after_stop() if callable(after_stop) else after_stop
    if signum == signal.SIGINT:
        print(f"interrupted: {said}", file=sys.stderr)
    else:
        print(f"terminated ({signal.Signals(signum).name}): {said}", file=sys.stderr)
    return 128 + signum


class Terminated(BaseException):
    """SIGTERM (what Slurm and Kubernetes send at a time limit or preemption), raised in the main
    thread so every ``finally`` runs: temp files removed, the cache lock released. ``signum``: the
    signal that ended the run (the train stage also stops on SIGUSR1, Slurm's ``--signal``)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = int(signum)


def terminate(signum: int) -> NoReturn:
    """Raise Terminated for ``signum`` from a signal handler, remembered (run_command) in case it breaks
    the code it lands in and surfaces as another exception."""
    global _stopped_by
    _stopped_by = signum
    raise Terminated(signum)


def _raise_terminated(signum: int, frame: object) -> None:
    mark_handled(signum)
    for s in WATCHED:  # once: a second signal must not interrupt the cleanup
        signal.signal(s, signal.SIG_IGN)
    terminate(signum)


# A signal's Python handler runs only when the main thread runs Python: blocked in C (a rendezvous
# waiting for a rank that never comes, a collective whose peer died) it would never run, and the
# process would ignore SIGTERM until SIGKILL. The kernel still writes the signal to the wakeup fd,
# which a thread watches: a signal no handler took within STUCK_S ends the process.
STUCK_S = 30.0
WATCHED = (signal.SIGTERM, signal.SIGUSR1)
_handled: dict[int, float] = {}


def mark_handled(signum: int) -> None:
    """Called by each Python handler of a WATCHED signal: the process is responsive."""
    _handled[signum] = time.monotonic()


def _watch(fd: int) -> None:
    """Read the wakeup pipe until its write end closes (the command ended), then close the read end here.
    Only this thread closes ``fd``: closed by the main thread while this one was between two reads, its
    number could be reused by a file opened next, whose bytes this thread would read as signals (a newline
    is SIGUSR1's 10: the process exited 138 minutes later, in the middle of the next command)."""
    try:
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in {b for b in data if b in WATCHED}:
                arrived = time.monotonic()
                threading.Timer(STUCK_S, _unless_handled, (signum, arrived)).start()
    finally:
        os.close(fd)


_exiting = threading.Lock()


def _unless_handled(signum: int, arrived: float) -> None:
    # a handler run shortly before the watchdog read the signal counts: the main thread may take it
    # before this thread gets to run (a save then taking longer than STUCK_S is no reason to exit)
    if _handled.get(signum, -STUCK_S) < arrived - STUCK_S and _exiting.acquire(blocking=False):
        name = signal.Signals(signum).name
        print(f"terminated ({name}): no response for {STUCK_S:.0f} s (blocked, e.g. waiting for another rank "
              "that is gone); exiting without cleanup", file=sys.stderr, flush=True)
        os._exit(128 + signum)


def _watchdog() -> Callable[[], None]:
    """Start watching for signals the main thread cannot take; the function that stops it."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        os.close(r)
        os.close(w)
        return lambda: None
    threading.Thread(target=_watch, args=(r,), name="signal-watchdog", daemon=True).start()

    def stop() -> None:
        signal.set_wakeup_fd(previous)
        os.close(w)  # the watching thread reads the end of the pipe and closes its own end

    return stop


_interrupted = False
# The signal that ended this command (SIGTERM, SIGUSR1): raised into whatever the main thread was running,
# it can surface as another exception (below)
_stopped_by: int | None = None


def _interrupt(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _interrupt_at_step_end(signum: int, frame: object) -> None:
    global _interrupted
    if _interrupted:  # the second Ctrl-C: at once
        raise KeyboardInterrupt
    _interrupted = True
    try:  # os.write, not print: a handler printing while the main thread was inside a write to stderr fails
        os.write(2, b"\ninterrupted: stopping at the end of this step (Ctrl-C again stops at once)\n")
    except OSError:  # stderr closed or gone: the stop needs no words
        pass


def interrupt_at_step_end() -> Callable[[], None]:
    """From here on, the first Ctrl-C only marks the command interrupted, for a loop that asks
    ``interrupted()`` at each step to stop there; a second one raises at once. Raised wherever the main
    thread was, a KeyboardInterrupt can break the library code it lands in (see run_command) or be lost in a
    finalizer, printing a traceback. The function that restores the handler; nothing where Ctrl-C is
    ignored or this is not the main thread."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not _interrupt:
        return lambda: None
    previous = signal.signal(signal.SIGINT, _interrupt_at_step_end)
    return lambda: signal.signal(signal.SIGINT, previous)


def interrupted() -> bool:
    """Whether Ctrl-C reached this command. Its KeyboardInterrupt can be lost: raised while the main
    thread runs a finalizer (the garbage collector's), Python prints it and goes on. A long loop asks
    this at each step (train/preemption.py) so that a Ctrl-C always stops it."""
    return _interrupted


def exit_without_teardown(rc: int) -> NoReturn:
    """End a console script with ``rc`` without tearing the interpreter down: freeing every object took
    0.7 s after ``mlm-train-tokenizer --type newmm`` had finished (PyThaiNLP's dictionary trie, half a
    million objects), a fifth of its run on the bench's 5 MB sample. Output streams are flushed first;
    atexit handlers do not run, so only for a command whose files are all closed and whose workers are
    all gone by the time its ``main`` returns, and never from a test (it ends the process)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left (BrokenPipe), a closed stream: nothing to save
            pass
    os._exit(rc)


def run_command(body: Callable[[], int], after_stop: str | Callable[[], str]) -> int:
    """Run a command's body the way every command ends: a UserError is one ``error:`` line and
    exit 2, Ctrl-C exit 130 and SIGTERM exit 143 (128 + signal number), each saying ``after_stop``
    (or what it returns when called then: where to resume depends on how far the run got);
    a closed pipe on stdout ends it quietly.

    A Ctrl-C or SIGTERM is raised wherever the main thread is, and library code between a lock's acquire
    and its ``finally: release()`` then fails on its own: tqdm's ``write`` (each logged step) raised
    ``RuntimeError: cannot release un-acquired lock`` in place of the KeyboardInterrupt, and the run
    ended in a traceback without saying where to resume. Any exception after such a signal is its
    consequence, and ends the command as the signal does."""
    global _interrupted, _stopped_by
    _interrupted, _stopped_by = False, None
    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    stop_watching: Callable[[], None] | None = None
    try:  # the handlers and the watchdog inside: a Ctrl-C in the first instants lands here too, not in a traceback
        if in_main:
            for s in WATCHED:
                previous[s] = signal.signal(s, _raise_terminated)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored
                previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
            stop_watching = _watchdog()
        return body()
    except UserError as e:
        print(f"error: {words(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _stopped(signal.SIGINT, after_stop)
    except Terminated as e:
        return _stopped(e.signum, after_stop)
    except BrokenPipeError:  # `mlm-inspect show cache | head`: the reader left, say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141  # 128 + SIGPIPE, as a shell reports a process the pipe ended
    except Exception:
        signum = signal.SIGINT if _interrupted else _stopped_by
        if signum is None:
            raise
        return _stopped(signum, after_stop)
    finally:
        if stop_watching is not None:
            stop_watching()
        for s, handler in previous.items():
            signal.signal(s, handler)
