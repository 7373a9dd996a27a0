"""``mlm-inspect run OUTPUT_DIR``: where a training run is, read from what it wrote (common/run_dir.py).

Finished or not (the final model saved at the run's last step), its last step, each checkpoint (complete,
or what a kill left: a ``.partial-checkpoint-<step>`` is a save that never finished), the data each one
trained on and where it changed, the latest losses, and the command that resumes it, with absolute paths.
No torch, no transformers, nothing written: a CPU node reads a GPU job's dir while it runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from common.corpora import CORPORA_FILE
from common.errors import UserError
from common.format import MANIFEST_NAME
from common.run_dir import (
    CARD_FILE,
    CHECKPOINT,
    COMMAND_FILE,
    DATA_RECORD,
    DELETING,
    FINISHED_MARK,
    LOCK,
    PARTIAL,
    PROVENANCE,
    command_line,
    config_file,
    data_changes,
    data_eras,
    latest_losses,
    missing_weights,
    moved_to,
    read_record,
    recorded_output_dir,
    short,
    step_of,
)


def refuse_other_dirs(path: Path) -> None:
    """UserError, one line, for a path that is not a run's --output_dir, saying what it is instead."""
    give = "give the --output_dir of an mlm-train run"
    if not path.exists():
        raise UserError(f"mlm-inspect run {path}: no such directory; {give}")
    if not path.is_dir():
        raise UserError(f"mlm-inspect run {path}: a file, not a directory; {give}")
    if CHECKPOINT.fullmatch(path.name) and (path / FINISHED_MARK).is_file():
        raise UserError(f"mlm-inspect run {path}: one checkpoint of a run; give the run's dir: mlm-inspect run "
                        f"{path.parent}")
    names = {p.name for p in path.iterdir()}
    if names & {FINISHED_MARK, LOCK, PROVENANCE} or any(
            CHECKPOINT.fullmatch(n) or n.startswith((PARTIAL, DELETING)) for n in names):
        return
    if CORPORA_FILE in names or MANIFEST_NAME in names or any(path.glob(f"*/{MANIFEST_NAME}")):
        raise UserError(f"mlm-inspect run {path}: a cache, not a run dir (mlm-inspect show {path} describes it); "
                        f"{give}")
    raise UserError(f"mlm-inspect run {path}: not a run dir (no checkpoint-<step> dir, no {FINISHED_MARK}, no "
                    f"{LOCK}); {give}")


def _checkpoint(path: Path) -> dict[str, Any]:
    """One entry of the run dir that is or was a checkpoint: its step, complete or not (and why), and for a
    complete one the samples it had seen and each split's data fingerprint (its data.json)."""
    name = path.name
    step = int(m.group(1)) if (m := CHECKPOINT.search(name)) else None
    entry: dict[str, Any] = {"name": name, "path": str(path), "step": step, "complete": False}
    if name.startswith(PARTIAL) and not (path / name[len(PARTIAL):]).exists():
        entry["why"] = ("an empty staging dir, left by a kill after its checkpoint was committed; the next resume "
                        "removes it")
    elif name.startswith(PARTIAL):
        entry["why"] = "a save that never finished (killed while writing); the next resume removes it"
    elif name.startswith(DELETING):
        entry["why"] = "a rotation that never finished (being deleted); the next resume removes it"
    elif step_of(read_record(path / FINISHED_MARK)) is None:
        entry["why"] = f"no readable {FINISHED_MARK} (a save that did not finish); the next resume removes it"
    elif why := missing_weights(path):
        entry["why"] = f"{why}: cannot be resumed from (--resume_from_checkpoint latest skips it)"
    else:
        record = read_record(path / DATA_RECORD) or {}
        splits = (record.get("data") or {}).get("splits") or {}
        entry.update(complete=True, step=step_of(read_record(path / FINISHED_MARK)),
                     samples_seen=record.get("samples_seen"),
                     data={n: s.get("fingerprint") for n, s in splits.items() if isinstance(s, dict)})
    return entry


def run_summary(output_dir: str | Path) -> dict[str, Any]:
    """Everything ``mlm-inspect run`` says about a run dir, as one JSON-able object (``--json`` prints it)."""
    out = Path(output_dir).absolute()
    refuse_other_dirs(out)
    entries = sorted((_checkpoint(p) for p in out.iterdir() if p.is_dir() and (
        CHECKPOINT.fullmatch(p.name) or (p.name.startswith((PARTIAL, DELETING)) and CHECKPOINT.search(p.name)))),
        key=lambda e: (e["step"] if e["step"] is not None else -1, e["name"]))
    complete = [e for e in entries if e["complete"]]
    final_state = read_record(out / FINISHED_MARK)
    final_step = step_of(final_state)
    newest = complete[-1] if complete else None
    finished = final_step is not None and (newest is None or final_step >= newest["step"])
    if finished or newest is None:
        home, state = out, final_state
    else:
        home, state = Path(newest["path"]), read_record(Path(newest["path"]) / FINISHED_MARK)
    steps = [s for s in (final_step, newest["step"] if newest else None) if s is not None]
    eras = data_eras(read_record(out / PROVENANCE) if finished else read_record(home / DATA_RECORD), max(steps, default=None))
    command = read_record(home / COMMAND_FILE)
    return {
        "output_dir": str(out), "finished": finished, "final_step": final_step,
        "last_step": max(steps, default=None), "target_steps": (state or {}).get("max_steps"),
        "checkpoints": entries, "data": eras, "data_changes": data_changes(eras), "losses": latest_losses(state),
        "card": str(home / CARD_FILE) if (home / CARD_FILE).is_file() else None,
        "resume": _resume(finished, newest, command, out),
    }


def _resume(finished: bool, newest: dict[str, Any] | None, command: dict[str, Any] | None,
            out: Path) -> dict[str, Any]:
    """How the run goes on: ``command`` (pastes from any directory, into ``out`` where the dir is now), or None
    and ``note`` saying why not."""
    if newest is None:
        if finished:
            return {"command": None, "note": "finished; no checkpoint to train on from"}
        return {"command": None, "note": "no complete checkpoint yet: nothing to resume from; rerunning the command "
                "that started it starts over"}
    if command is None:
        return {"command": None, "note": f"{newest['name']} records no command ({COMMAND_FILE}: saved by an older "
                "version); rerun the command that started the run with --resume_from_checkpoint latest"}
    config = config_file(command)
    edit = f'; first add "resume_from_checkpoint": "latest" to {config}' if config else ""
    recorded = recorded_output_dir(command)
    if recorded is not None and Path(recorded).resolve() != out.resolve():
        edit += (f"; this dir trained as {recorded}: set output_dir in {config} to {out}" if config
                 else f"; this dir trained as {recorded}, and the command trains here")
        command = command if config else moved_to(command, out)
    if finished:
        note = f"finished; to train on from {newest['name']}, raise --max_steps (or --num_train_epochs){edit} in"
    else:
        note = f"resume from {newest['name']} (from any directory){edit}"
    return {"command": command_line(command, resume=True), "note": note}


def _state_line(s: dict[str, Any]) -> str:
    target = f" of {s['target_steps']:,}" if s.get("target_steps") else ""
    if s["finished"]:
        return f"finished at step {s['final_step']:,}{target}: the final model is saved in {s['output_dir']}"
    if s["last_step"] is None:
        return "not finished: no checkpoint yet"
    model = f"; a finished model of step {s['final_step']:,} is beside it" if s["final_step"] is not None else ""
    return f"not finished: last step {s['last_step']:,}{target} (its newest complete checkpoint){model}"


def _checkpoint_line(e: dict[str, Any], width: int) -> str:
    if not e["complete"]:
        return f"  {e['name']:<{width}} incomplete  {e['why']}"
    seen = e.get("samples_seen")
    data = ", ".join(f"{n} {short(f)}" for n, f in e.get("data", {}).items() if n.rpartition("/")[2] == "train")
    return (f"  {e['name']:<{width}} complete    step {e['step']:,}"
            f"{f', {seen:,} samples seen' if isinstance(seen, int) else ''}{f'; data {data}' if data else ''}")


def _loss_line(losses: dict[str, Any]) -> str:
    parts = []
    if "train" in losses:
        parts.append(f"step {losses['train']['step']}: loss {losses['train']['loss']:.4f}")
    if "eval" in losses:
        ev = losses["eval"]
        named = ", ".join(f"{k} {v:.4f} (perplexity {math.exp(min(v, 50.0)):.2f})" for k, v in sorted(ev.items())
                          if k != "step" and isinstance(v, (int, float)))
        parts.append(f"held-out at step {ev['step']}: {named}")
    return "; ".join(parts) or "none logged yet"


def run_report(s: dict[str, Any]) -> str:
    """The summary in words, one subject a line."""
    entries = s["checkpoints"]
    width = max([len(e["name"]) for e in entries] + [12])
    lines = [f"== {s['output_dir']}", f"state       {_state_line(s)}",
             "checkpoints" + ("" if entries else " none"), *(_checkpoint_line(e, width) for e in entries)]
    if s["data_changes"]:
        lines += ["data        changed during the run:", *(f"  {c}" for c in s["data_changes"])]
    elif s["data"]:
        same = ", ".join(f"{n} {short(f)}" for n, f in s["data"][-1]["splits"].items() if n.rpartition("/")[2] == "train")
        lines.append(f"data        the same throughout: {same}")
    lines.append(f"losses      {_loss_line(s['losses'])}")
    if s["card"]:
        lines.append(f"card        {s['card']}")
    resume = s["resume"]
    lines.append(f"resume      {resume['note']}" + (":" if resume["command"] else ""))
    if resume["command"]:
        lines.append(f"  {resume['command']}")
    return "\n".join(lines)
