"""Where piece jobs run. An executor only schedules: each maps piece jobs to ``piece.run_piece``.

* local: ``--num_workers`` forked processes (workers.py) tokenize the tasks
  of every job in one ordered stream, so no worker waits between pieces; the
  parent assembles each piece from its share of the stream.
* ray: ``--executor ray`` (ray_executor.py), remote tasks on a cluster.

A slice of a sliced build is not an executor: its plan holds only its own
jobs (plan.py), which the local executor runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common.tokenizer import LoadedTokenizer, TokenizerSource
from preprocess.cache_dir import remove_spills, remove_stale_temps
from preprocess.config import PreprocessConfig
from preprocess.encode import encode_task
from preprocess.encoder import set_worker_state, worker_state
from preprocess.piece import PieceDone, run_piece
from preprocess.plan import PieceJob
from preprocess.tasks import TaskResult
from preprocess.workers import Workers

Progress = Callable[[int], object]  # bytes of text done
MapPieces = Callable[[list[PieceJob], Progress], Iterator[tuple[int, PieceDone]]]  # (index in the list, piece)


@contextmanager
def executor(cfg: PreprocessConfig, loaded: LoadedTokenizer, encoder: str, source: TokenizerSource,
             out_dirs: list[Path]) -> Iterator[MapPieces]:
    """The ``--executor``'s map from piece jobs to finished pieces, in any order. Chunk files a stop
    left unread in ``out_dirs`` are deleted on the way out."""
    dtype = np.dtype(loaded.identity.dtype)
    try:
        if cfg.on_ray:
            from preprocess import ray_executor

            where = Path(cfg.tokenizer_name_or_path)
            spec = ray_executor.TokenizerSpec(str(where.resolve()) if where.exists() else cfg.tokenizer_name_or_path,
                                              cfg.tokenizer_type, cfg.tokenizer_settings,
                                              source.digest, encoder, worker_state(loaded, encoder))
            with ray_executor.session(cfg.ray_address, cfg.num_workers) as ray:
                yield lambda jobs, progress: ray_executor.map_pieces(ray, jobs, spec, dtype, cfg.strict, progress)
        else:
            with local_workers(cfg, loaded, encoder) as encode:
                yield lambda jobs, progress: local_pieces(jobs, encode, dtype, cfg.strict, progress)
    finally:
        for d in out_dirs:
            remove_spills(d)
            if cfg.on_ray:  # temp files of this host's Ray workers killed mid-write
                remove_stale_temps(d)


Encode = Callable[[Iterable], Iterator[TaskResult]]


@contextmanager
def local_workers(cfg: PreprocessConfig, loaded: LoadedTokenizer, encoder: str) -> Iterator[Encode]:
    """A map of tasks to results, in order: a process pool, or in-process for one worker.

    Workers are forked after the parent set up the tokenizer, so each starts
    with it loaded (a reload costs about 1 s a process). Safe because
    TOKENIZERS_PARALLELISM is false before the parent first used it (see run.py).
    """
    set_worker_state(loaded, encoder)
    if cfg.num_workers == 1:
        yield lambda tasks: map(encode_task, tasks)
        return
    with Workers(cfg.num_workers, encode_task) as workers:  # an error or a signal: killed, none outlives the run
        yield workers.imap


def local_pieces(jobs: list[PieceJob], encode: Encode, dtype: np.dtype, strict: bool,
                 progress: Progress) -> Iterator[tuple[int, PieceDone]]:
    """Every job's tasks in one ordered stream through ``encode``; each piece assembled from its share."""
    stream = encode(t for job in jobs for t in job.tasks())
    for i, job in enumerate(jobs):
        yield i, run_piece(job, _counted(itertools.islice(stream, job.n_tasks), progress), dtype, strict)


def _counted(results: Iterable[TaskResult], progress: Progress) -> Iterator[TaskResult]:
    for r in results:
        progress(r.nbytes)
        yield r
