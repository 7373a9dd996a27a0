"""``--executor ray``: the tokenizing tasks on a Ray cluster whose nodes share the cache dir.

For each piece to tokenize, one Ray task per sharding.Task reads, encodes
and leaves its arrays in chunk files beside the pieces (encode.spilled),
returning a small record; one more task, once those are done, appends the
chunks in order into the piece's arrays, commits its record and packs its
blocks (the same _PieceAssembler and pack_piece a local run uses, so the
bytes are the same). The driver only submits, shows progress and receives
records: no token array travels through it or through Ray's object store.
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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

from common.cli import Terminated
from common.errors import UserError
from preprocess import build
from preprocess.sharding import Scan, plan_tasks

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


@dataclass(frozen=True)
class PieceJob:
    """What assembling one piece needs, without the whole plan."""

    out_dir: str
    key: str
    block_key: str
    scans: dict[int, Scan]
    dtype: str
    max_seq_length: int
    strict: bool
    paths: dict[int, str]


_LOADED: dict[str, Any] = {}


def _ensure_tokenizer(spec: TokenizerSpec) -> None:
    """Load the tokenizer once per Ray worker process and set the encoder state tasks read."""
    if _LOADED.get("spec") is spec or _LOADED.get("digest") == (spec.digest, spec.encoder):
        return
    if spec.state is not None and "backend_json" in spec.state:
        from preprocess.encode import set_state

        set_state(spec.state)  # the driver's own backend, verified there: no transformers, no file reads
        _LOADED["digest"] = (spec.digest, spec.encoder)
        return
    from common.tokenizer import load_tokenizer
    from preprocess.encode import set_worker_state

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
    from preprocess.encode import encode_task, spilled

    _ensure_tokenizer(spec)
    return spilled(encode_task(task), task)


def _assemble(job: PieceJob, *results: Any) -> tuple[dict, dict, build.Examples]:
    _no_torch()
    out_dir = Path(job.out_dir)
    plan = SimpleNamespace(out_dir=out_dir, keys={0: job.key}, scans=job.scans)
    assembler = build._PieceAssembler(plan, 0, np.dtype(job.dtype))  # type: ignore[arg-type]
    examples = build.Examples()
    try:
        for r in results:
            for chunk in build.checked_chunks(r, Path(job.paths[r.shard]), job.strict, keep=True):
                assembler.add(chunk)
                examples.add(chunk)
        record = assembler.commit()
    except BaseException:
        assembler.abort()
        raise
    for r in results:
        build.remove_spill(r)
    blocks = build.pack_piece(out_dir, record, job.block_key, job.max_seq_length)
    return record, blocks, examples


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


def tokenize_split(ray: Any, plan: build.SplitPlan, dtype: np.dtype, spec: TokenizerSpec, max_seq_length: int,
                   strict: bool) -> build.Examples:
    """Tokenize and pack every piece ``plan`` needs on the cluster; records land in ``plan`` as the
    local executor leaves them. A UserError a task raised (a shard changed, --strict) is raised here."""
    todo = plan.to_tokenize
    examples = build.Examples()
    if not todo:
        return examples
    encode = ray.remote(max_retries=RETRIES)(_encode)
    assemble = ray.remote(max_retries=RETRIES)(_assemble)
    pieces: dict[Any, int] = {}
    out_dir = plan.out_dir.resolve()  # a worker's working dir is not the driver's: every path absolute
    reading = {**plan.reading, "spill_dir": str(Path(plan.reading["spill_dir"]).resolve())}
    for p in todo:
        group = plan.groups[p]
        tasks = plan_tasks([(i, plan.shards[i].resolve(), plan.scans[i], plan.fmts[i]) for i in group], **reading)
        job = PieceJob(str(out_dir), plan.keys[p], plan.block_keys[p], {i: plan.scans[i] for i in group},
                       dtype.name, max_seq_length, strict, {i: str(plan.shards[i]) for i in group})
        pieces[assemble.remote(job, *[encode.remote(t, spec) for t in tasks])] = p
    bar = tqdm(total=plan.bytes_to_tokenize, unit="B", unit_scale=True, unit_divisor=1024,
               desc=f"{plan.split}: tokenizing {plan.shards_of(todo)} shards on Ray", dynamic_ncols=True)
    start, n_tokens, pending = time.perf_counter(), 0, list(pieces)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                record, blocks, found = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, UserError):
                    raise UserError(str(e.cause)) from None
                raise
            p = pieces[done[0]]
            plan.records[p], plan.blocks[p] = record, blocks
            examples.unk += found.unk[: build.UNK_EXAMPLES - len(examples.unk)]
            examples.bad += found.bad[: build.BAD_EXAMPLES - len(examples.bad)]
            n_tokens += record["tokens"]
            bar.update(sum(plan.scans[i].size for i in plan.groups[p]))
            bar.set_postfix_str(f"{n_tokens / max(time.perf_counter() - start, 1e-9):,.0f} tok/s", refresh=False)
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
    finally:
        bar.close()
    return examples
