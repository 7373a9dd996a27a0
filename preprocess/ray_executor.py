"""``--executor ray``: the tokenizing tasks on a Ray cluster whose nodes share the cache dir.

For each piece job, one Ray task per task of the job reads, encodes and
leaves its arrays in chunk files beside the pieces (spill.spilled),
returning a small record; one more task, once those are done, runs the job
(piece.run_piece, as a local run does, so the bytes are the same). The
driver only submits, shows progress and receives records: no token array
travels through it or through Ray's object store.
A task whose worker or node died is retried by Ray; chunk files are deleted
only once their piece is committed, so a retried assembly finds them.

Ray is an optional extra (``pip install .[ray]``): imported only here, only
with ``--executor ray``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.cli import Terminated
from common.errors import UserError
from preprocess.piece import PieceDone, run_piece
from preprocess.plan import PieceJob

RETRIES = 3  # per task, when its worker or node dies
_WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}


@dataclass(frozen=True)
class TokenizerSpec:
    """What a Ray worker loads: the tokenizer the driver planned with (checked by digest) and its backend."""

    name_or_path: str
    type: str
    settings: dict[str, Any]
    digest: str
    encoder: str
    state: dict[str, Any] | None = None  # encode.worker_state, when it rebuilds the encoder without loading


_LOADED: dict[str, Any] = {}


def _ensure_tokenizer(spec: TokenizerSpec) -> None:
    """Load the tokenizer once per Ray worker process and set the encoder state tasks read."""
    if _LOADED.get("spec") is spec or _LOADED.get("digest") == (spec.digest, spec.encoder):
        return
    if spec.state is not None and "backend_json" in spec.state:
        from preprocess.encoder import set_state

        set_state(spec.state)  # the driver's own backend, verified there: no transformers, no file reads
        _LOADED["digest"] = (spec.digest, spec.encoder)
        return
    from common.tokenizer import load_tokenizer
    from preprocess.encoder import set_worker_state

    loaded = load_tokenizer(spec.name_or_path, spec.type, spec.settings)
    if loaded.identity.digest != spec.digest:
        raise UserError(f"--tokenizer_name_or_path {spec.name_or_path}: the files a Ray worker loaded differ from "
                        "those the run planned with (changed meanwhile, or another copy on this node)")
    set_worker_state(loaded, spec.encoder)
    _LOADED["digest"] = (spec.digest, spec.encoder)


def _no_torch() -> None:
    """Tokenizing needs no torch, which transformers imports whenever it is installed (1 s and 300 MB a
    worker): as in the CLI (preprocess/__main__.py), before anything imports transformers."""
    if "transformers" not in sys.modules:
        sys.modules.setdefault("torch", None)  # type: ignore[arg-type]


def _encode(task: Any, spec: TokenizerSpec) -> Any:
    _no_torch()
    from preprocess.encode import encode_task
    from preprocess.spill import spilled

    _ensure_tokenizer(spec)
    return spilled(encode_task(task), task)


def _run_piece(job: PieceJob, dtype: np.dtype, strict: bool, *results: Any) -> PieceDone:
    _no_torch()
    return run_piece(job, results, dtype, strict)


CONNECT_TIMEOUT_S = 5.0


def refuse_unreachable(address: str) -> None:
    """UserError at once when nothing answers at a HOST:PORT address: ``ray.init`` would retry every 30 s,
    for ever. ``auto`` and other forms are Ray's to resolve."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise UserError(f"--ray_address {address}: nothing answers there ({why} within {CONNECT_TIMEOUT_S:.0f} s); "
                        "start the head node with `ray start --head` and give the address it prints, or "
                        "--ray_address auto on a node of the cluster") from None


@contextmanager
def session(address: str | None, num_cpus: int) -> Iterator[Any]:
    """Ray, connected to the cluster at ``address`` (``auto``: the one ``ray start`` made here), or a
    local instance of ``num_cpus`` workers; shut down after, unless the caller had it running."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs here: silences a FutureWarning
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'mlm-pretrain[ray]' (or pip install ray) on "
                        "every node") from None
    if ray.is_initialized():
        yield ray
        return
    env = {"env_vars": {**_WORKER_ENV, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}}
    kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False, "runtime_env": env}
    if address:
        refuse_unreachable(address)
    ours = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if address:
            if address.split(":")[0] in ("127.0.0.1", "localhost"):
                kwargs["_node_ip_address"] = "127.0.0.1"  # a cluster on loopback stays there
            ray.init(address=address, **kwargs)
        else:
            # "local": a new instance even where a cluster runs here (ray.init() would join it, then refuse
            # num_cpus: "When connecting to an existing cluster, num_cpus ... must not be provided")
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"--ray_address {address}: cannot connect to a Ray cluster ({' '.join(str(e).split())[:200]})"
                        if address else f"cannot start a local Ray instance ({e})") from None
    for s, handler in ours.items():  # Ray's own SIGTERM handler dies with a stack dump and status 15
        if handler is not None:
            signal.signal(s, handler)
    try:
        yield ray
    finally:
        ray.shutdown()
        for s, handler in ours.items():  # shutdown resets them too
            if handler is not None:
                signal.signal(s, handler)


def _cancel(ray: Any, refs: list[Any]) -> None:
    for ref in refs:
        ray.cancel(ref, force=True)


def map_pieces(ray: Any, jobs: list[PieceJob], spec: TokenizerSpec, dtype: np.dtype, strict: bool,
               progress: Callable[[int], object]) -> Iterator[tuple[int, PieceDone]]:
    """Run every job on the cluster; each finished piece as it comes. A UserError a task raised (a shard
    changed, --strict) is raised here."""
    encode = ray.remote(max_retries=RETRIES)(_encode)
    run = ray.remote(max_retries=RETRIES)(_run_piece)
    index = {run.remote(job, dtype, strict, *[encode.remote(t, spec) for t in job.tasks()]): i
             for i, job in enumerate(jobs)}
    pending = list(index)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                piece = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, UserError):
                    raise UserError(str(e.cause)) from None
                raise
            i = index[done[0]]
            progress(jobs[i].bytes)
            yield i, piece
    except SystemError as e:  # a signal's exception raised inside Ray's Cython wait comes out wrapped
        if isinstance(e.__cause__, (Terminated, KeyboardInterrupt)):
            raise e.__cause__ from None  # the session's shutdown stops the tasks (cancelling them races Ray)
        _cancel(ray, pending)
        raise
    except (Terminated, KeyboardInterrupt):
        raise  # as above
    except BaseException:
        _cancel(ray, pending)
        raise
