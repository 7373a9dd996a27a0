"""What --output_dir holds, and what a run may do with it: resume, start, or stop before it overwrites.

A run's dir holds ``checkpoint-<step>`` dirs while it trains and, once it has
finished, the model with ``trainer_state.json`` beside it (written last by
train/run.py, so it marks a finished run).

A checkpoint is a commit, like the cache's manifest: the Trainer writes it
into ``.partial-checkpoint-<step>/`` and it is renamed to
``checkpoint-<step>`` once every rank has written its part, so a visible
checkpoint is complete (its ``trainer_state.json``, the Trainer's last file,
is there). Rotation renames a checkpoint to ``.deleting-...`` before removing
it, and only after the next one is committed. Whatever a SIGKILL leaves
(a partial dir, a half-deleted one, a checkpoint of an older version
without its state) is never taken for a checkpoint, and the next run that
resumes removes it, naming it in one line. Imports neither torch nor
transformers: the interrupt message reads it too.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import run_dir
from common.errors import UserError
from common.format import writer_id, writer_words
from common.json_files import fsync_dir
from common.run_dir import CHECKPOINT, DELETING, FINISHED_MARK, LOCK, PARTIAL  # noqa: F401  (named once there)


def _all_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    out = Path(output_dir)
    if not out.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT.fullmatch(p.name)) and p.is_dir())


def saved(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-<step>`` dirs of ``output_dir`` that a save finished (their state is there), oldest
    step first: a run's, whether or not they can still be resumed from (``checkpoints``)."""
    return [p for _, p in _all_checkpoints(output_dir) if step_of(p / FINISHED_MARK) is not None]


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete ``checkpoint-<step>`` dirs of ``output_dir``, oldest step first: saved, and their weights
    still there (deleted by hand to save space, the dir is no longer one to resume from)."""
    return [p for p in saved(output_dir) if run_dir.missing_weights(p) is None]


def incomplete(output_dir: str | Path) -> list[Path]:
    """What a killed save or rotation left: partial and half-deleted dirs, checkpoints without their state."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    leftovers = [p for p in out.iterdir() if p.name.startswith((PARTIAL, DELETING)) and p.is_dir()]
    return sorted(leftovers) + [p for _, p in _all_checkpoints(out) if step_of(p / FINISHED_MARK) is None]


def remove_incomplete(output_dir: str | Path) -> list[str]:
    """Delete what ``incomplete`` finds (it can never be resumed from); the names deleted."""
    gone = []
    for p in incomplete(output_dir):
        shutil.rmtree(p, ignore_errors=True)
        gone.append(p.name)
    return gone


def unusable(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, in words; None if it can (its state and weights are there)."""
    if not checkpoint.is_dir():
        return "not a directory"
    if step_of(checkpoint / FINISHED_MARK) is None:
        return f"no readable {FINISHED_MARK} (a save that did not finish)"
    return run_dir.missing_weights(checkpoint)


def commit(staging: Path, final: Path) -> None:
    """Make the checkpoint written in ``staging`` visible as ``final``, at once (a rename, then the dir's fsync).
    A ``final`` already there (a step saved twice) is moved aside first and deleted after."""
    old = final.with_name(f"{DELETING}{final.name}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def rotate(output_dir: Path, limit: int | None, keep: str | None = None) -> None:
    """Delete the oldest complete checkpoints beyond ``limit`` (``keep``: the best one, never deleted),
    each renamed away first, so a kill mid-delete leaves no half checkpoint under a checkpoint's name."""
    if not limit or limit <= 0:
        return
    found = checkpoints(output_dir)
    doomed = [p for p in found[: max(len(found) - limit, 0)] if keep is None or Path(keep).name != p.name]
    for p in doomed:
        aside = p.with_name(f"{DELETING}{p.name}")
        p.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)


def last_checkpoint(output_dir: str | Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1] if found else None


def _latest(out: Path, found: list[Path], finished: int | None, say: bool) -> Path:
    """The newest checkpoint of ``found`` (saved ones) that can be resumed from; newer ones that cannot are
    named in a note (``say``: once, by rank 0; their weights deleted: resuming there would fail in the
    Trainer, after the model was built), never deleted."""
    for path in reversed(found):  # saved: their state read already, only the weights are left to check
        why = run_dir.missing_weights(path)
        if why is None:
            return path
        if say:
            print(f"note: --resume_from_checkpoint latest: skipping {path}: {why}", file=sys.stderr)
    if found:
        raise UserError(f"--resume_from_checkpoint latest: no checkpoint in --output_dir {out} can be resumed from "
                        f"(each lacks its model weights: {', '.join(p.name for p in found)}); give "
                        "--resume_from_checkpoint a complete checkpoint-<step> dir, or add --overwrite_output_dir "
                        "to start afresh there (deleting them)")
    model = " (it holds a finished model, trained without checkpoints)" if finished is not None else ""
    raise UserError(f"--resume_from_checkpoint latest: --output_dir {out} holds no checkpoint-<step> dir"
                    f"{model}; drop the flag to start a new run (into another --output_dir)")


def step_of(state_file: Path) -> int | None:
    """``global_step`` of a trainer_state.json; None if it is missing or unreadable (read as mlm-inspect run
    reads it: common/run_dir.py)."""
    return run_dir.step_of(run_dir.read_record(state_file))


def finished_step(output_dir: str | Path) -> int | None:
    """The step at which a finished run in ``output_dir`` ended; None if it holds no finished run."""
    return step_of(Path(output_dir) / FINISHED_MARK)


def resume_hint(output_dir: str | Path | None) -> str:
    """Where a stopped run can go on from, in words, for the interrupt message."""
    if not output_dir:
        return "it stopped before its settings were read: nothing was trained"
    last = last_checkpoint(output_dir)
    if last is None:
        return f"no checkpoint was saved in --output_dir {output_dir}, so a rerun starts from the beginning"
    return (f"the newest checkpoint is {last}: rerun the same command with --resume_from_checkpoint latest "
            "to continue from it")


@contextmanager
def output_lock(output_dir: str | Path, hold: bool) -> Iterator[None]:
    """One training job per --output_dir: an flock()ed file naming its holder (``hold``: this process is
    rank 0; the kernel releases it even on SIGKILL). A second job (a requeue overlapping the old one, a
    duplicate launch) would delete the first one's checkpoint being saved: refused in one line."""
    if not hold:
        yield
        return
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = writer_words(os.pread(fd, 256, 0).decode(errors="replace"))
            raise UserError(f"--output_dir {out} is being trained into by another job ({holder}); wait "
                            "for it to end, or train into another --output_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{writer_id()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Start:
    """How a run begins: from a checkpoint (``resume``), from scratch, or not at all (``done``: a note why).

    ``reached``: the checkpoint is at the run's last step already, but the run
    did not finish (killed while saving the final model): its model is the
    final one, and no step is trained (the Trainer, resumed at its last step,
    would train one more).
    """

    resume: str | None = None
    done: str | None = None
    reached: bool = False


def plan_start(output_dir: str, resume: str | None, overwrite: bool, target_steps: int | None,
               may_delete: bool = True) -> Start:
    """Resume, start, or do nothing, never overwriting a run silently.

    ``resume``: the flag's value (``latest``: the newest checkpoint);
    ``target_steps``: the optimizer steps this run would end at, when known.
    A finished run resumed with nothing left to do is a note, not a 5th step
    over a 4-step run; a dir holding a finished model or checkpoints is refused
    for a fresh start unless ``overwrite`` (which deletes its checkpoints: a
    later ``latest`` must not pick the old run's; ``may_delete``: this process is
    the one that deletes, rank 0 under torchrun).
    """
    out = Path(output_dir)
    if resume not in (None, "latest") and (why := unusable(Path(resume))):  # named: an error, nothing deleted
        raise UserError(f"--resume_from_checkpoint {resume}: cannot resume from it: {why}; give a complete "
                        f"checkpoint-<step> dir, or latest for the newest complete one in --output_dir")
    if may_delete and (gone := remove_incomplete(out)):
        print(f"note: removed {', '.join(gone)} from {out}: incomplete (a save or rotation that was killed), "
              "never resumable", file=sys.stderr)
    finished, found = finished_step(out), saved(out)
    last = found[-1] if found else None  # what a new run would overwrite, resumable or not
    if resume == "latest":
        resume = str(_latest(out, found, finished, say=may_delete))
    if resume is not None and not overwrite and (last is not None or finished is not None) \
            and Path(resume).resolve().parent != out.resolve():
        raise UserError(f"--output_dir {out} holds another run ({f'its last checkpoint: {last.name}' if last else ''}"
                        f"{'; ' if last and finished is not None else ''}"
                        f"{f'a finished model, step {finished}' if finished is not None else ''}) that resuming "
                        f"{resume} there would overwrite; resume into another --output_dir, or add "
                        "--overwrite_output_dir to replace that run")
    if resume is not None and not (Path(resume) / "optimizer.pt").is_file():
        raise UserError(f"--resume_from_checkpoint {resume}: it holds the model only (saved with --save_only_model), "
                        "not the optimizer and learning-rate schedule: resuming would restart both. Start a new run "
                        f"from its weights with --model_name_or_path {resume} instead")
    if resume is not None:
        step = step_of(Path(resume) / FINISHED_MARK)
        reached = step is not None and target_steps is not None and step >= target_steps
        if reached and finished is not None and finished >= step:
            return Start(done=f"{out} holds a run that finished at step {finished} (this command's target: "
                              f"{target_steps} steps); nothing to do. To train further, raise --max_steps "
                              "(or --num_train_epochs)")
        return Start(resume=resume, reached=reached)
    if overwrite:
        for path in found if may_delete else ():
            path.unlink() if path.is_symlink() else shutil.rmtree(path)
        if may_delete:  # an interrupted fresh run must not leave the old run looking finished
            (out / FINISHED_MARK).unlink(missing_ok=True)
        if may_delete and (found or finished is not None):
            print(f"note: --overwrite_output_dir: starting afresh in {out}"
                  + (f"; deleted its {len(found)} checkpoint dirs" if found else ""), file=sys.stderr)
        return Start()
    if last is not None:
        raise UserError(f"--output_dir {out} holds checkpoints (the last: {last.name}) that a new run would "
                        "overwrite; resume with --resume_from_checkpoint latest, train into another --output_dir, "
                        "or add --overwrite_output_dir to start afresh")
    if finished is not None:
        raise UserError(f"--output_dir {out} holds a finished model (step {finished}) that a new run would replace; "
                        "train into another --output_dir, or add --overwrite_output_dir to replace it")
    return Start()
