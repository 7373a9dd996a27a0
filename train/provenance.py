"""What a run trains on, recorded in every checkpoint and checked when the run resumes.

A checkpoint holds ``data.json``: the identity of each split it trained on
(the manifest's fingerprint, less where the text and tokenizer live), the
block size, the data order's parameters, the step and the samples seen, and
the history of earlier data when the run was continued on other data; and
``manifests/<split>.json``, the manifests themselves, to say what changed.
Resuming on a cache whose data differs is refused in one line unless
``--allow_data_change``; the final model's ``provenance.json`` then lists
every data the run trained on and the step each one started at, and, for a
run started from another model (``--model_name_or_path``: a second stage at
a longer ``--max_seq_length``, say), that model's own provenance, so a chain
of stages reads back to the first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.format import FormatError
from common.json_files import read_json, write_json_atomic
from common.manifest import Manifest
from common.run_dir import DATA_RECORD, PROVENANCE  # noqa: F401  (the run dir's names, once: common/run_dir.py)


def identity(manifests: dict[str, Manifest], max_seq_length: int, datasets_type: str, order: dict[str, Any]
             ) -> dict[str, Any]:
    """The data a run trains on, as a JSON object equal for equal data."""
    splits = {}
    for name, m in manifests.items():
        t = m.totals()
        splits[name] = {"fingerprint": m.fingerprint(where=False), "input_dir": m.input_dir, "shards": t["shards"],
                        "tokens": t["tokens"], "blocks": t["blocks"]}
    return {"splits": splits, "max_seq_length": max_seq_length, "datasets_type": datasets_type, "order": order}


def write_record(checkpoint: Path, data: dict[str, Any], history: list[dict[str, Any]], manifests: dict[str, Manifest],
                 step: int, global_batch: int, base: tuple[int, int] = (0, 0),
                 tokens_seen: dict[str, int] | None = None) -> None:
    """``data.json`` and ``manifests/`` into a checkpoint being written. ``base``: (step, samples seen) where
    this run resumed, so the count stays true when the global batch changed on the way. ``tokens_seen``: the
    real tokens trained from each corpus so far (train/throughput.py), when known."""
    write_manifests(checkpoint, manifests)
    samples = samples_at(base, step, global_batch)
    record = {"step": step, "samples_seen": samples, "data": data, "history": history}
    if tokens_seen is not None:
        record["tokens_seen"] = tokens_seen
    write_json_atomic(checkpoint / DATA_RECORD, record)


def tokens_seen(checkpoint: Path) -> dict[str, int] | None:
    """The per-corpus real tokens a checkpoint recorded; None when it recorded none (an older checkpoint)."""
    try:
        counts = read_json(checkpoint / DATA_RECORD)["tokens_seen"]
        return {str(k): int(v) for k, v in counts.items()}
    except (FormatError, KeyError, TypeError, ValueError, AttributeError):
        return None


def samples_at(base: tuple[int, int], step: int, global_batch: int) -> int:
    """The samples trained by optimizer step ``step``, for a run that started at ``base`` = (step, samples
    trained by then), taking ``global_batch`` a step since."""
    return base[1] + (step - base[0]) * global_batch


def write_manifests(where: Path, manifests: dict[str, Manifest]) -> None:
    """``<where>/manifests/<split>.json``: the manifests as read when training started (the cache may have been
    rebuilt since), beside a checkpoint or the final model."""
    for name, m in manifests.items():  # "train", or "<corpus>/train" for named corpora
        path = where / "manifests" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, m.to_dict())


def resumed_at(checkpoint: Path) -> tuple[int, int]:
    """(step, samples seen) a checkpoint records; for one without a record, its step at the run's batch is unknown:
    (0, 0), and the count starts over."""
    try:
        rec = read_json(checkpoint / DATA_RECORD)
        return int(rec["step"]), int(rec["samples_seen"])
    except (FormatError, KeyError, TypeError, ValueError):
        return 0, 0


def _shard_changes(before: Manifest | None, now: Manifest) -> str:
    if before is None:
        return "other data (the checkpoint keeps no copy of its manifest to say which)"
    old = {s.path: s.digest for s in before.shards}
    new = {s.path: s.digest for s in now.shards}
    parts = []
    for what, names in (("added", sorted(set(new) - set(old))), ("removed", sorted(set(old) - set(new))),
                        ("changed", sorted(n for n in set(old) & set(new) if old[n] != new[n]))):
        if names:
            parts.append(f"{len(names)} shard{'s' if len(names) > 1 else ''} {what} ({', '.join(names[:5])}"
                         f"{' ...' if len(names) > 5 else ''})")
    return ", ".join(parts) or "the same shards, tokenized or packed otherwise (tokenizer or parameters)"


def _old_manifest(checkpoint: Path, split: str) -> Manifest | None:
    path = checkpoint / "manifests" / f"{split}.json"
    try:
        return Manifest.from_dict(read_json(path), source=str(path))
    except FormatError:
        return None


def check_resume(checkpoint: Path, now: dict[str, Any], manifests: dict[str, Manifest], allow: bool
                 ) -> list[dict[str, Any]]:
    """The data history to carry on from ``checkpoint``; UserError, one line, if its data differs from
    ``now`` and not ``allow`` (a note if allowed). Changes of the data order alone are a note."""
    try:
        rec = read_json(checkpoint / DATA_RECORD)
        before, history, step = rec["data"], list(rec.get("history", [])), int(rec["step"])
    except (FormatError, KeyError, TypeError, ValueError):
        print(f"note: {checkpoint} has no readable {DATA_RECORD} (saved by an older version): the data it "
              "trained on cannot be compared with this cache", file=sys.stderr)
        return []
    changed = []
    for split in sorted(set(before.get("splits", {})) | set(now["splits"])):
        was, is_ = before.get("splits", {}).get(split), now["splits"].get(split)
        if was is None or is_ is None:
            changed.append(f"{split}: {'added' if was is None else 'gone'}")
        elif was.get("fingerprint") != is_["fingerprint"]:
            changed.append(f"{split}: {_shard_changes(_old_manifest(checkpoint, split), manifests[split])}")
    for key in ("max_seq_length", "datasets_type"):
        if before.get(key) != now[key]:
            changed.append(f"--{key} {before.get(key)} -> {now[key]}")
    was_order = before.get("order", {})
    if was_order.get("global_batch") not in (None, now["order"]["global_batch"]):
        print(f"note: the global batch is now {now['order']['global_batch']} ({checkpoint.name}'s was "
              f"{was_order['global_batch']}): training continues at sample {int(rec.get('samples_seen', 0)):,}, "
              "the first one not trained on", file=sys.stderr)
    order = [f"{k} {was_order.get(k)} -> {v}" for k, v in now["order"].items()
             if k != "global_batch" and was_order.get(k) != v]
    if order:
        print(f"note: the data order differs from {checkpoint.name}'s ({', '.join(order)}): the samples after step "
              f"{step} follow the new order", file=sys.stderr)
    if not changed:
        return history
    what = "; ".join(changed)
    if not allow:
        raise UserError(f"{checkpoint} was trained on other data than the cache holds now ({what}); resuming would "
                        "go on over other blocks in another order: rebuild the cache as it was, or add "
                        "--allow_data_change to continue on this data (recorded in the model's provenance.json)")
    print(f"note: --allow_data_change: continuing from step {step} on other data ({what}); provenance.json "
          "will list both", file=sys.stderr)
    return [*history, {"until_step": step, "data": before}]


def started_from(model_dir: str | None) -> dict[str, Any] | None:
    """What a run started from: the model dir (absolute), the step it was saved at, and its own
    ``provenance.json`` (None for a model trained elsewhere); None for a fresh model."""
    if not model_dir:
        return None
    path = Path(model_dir).resolve()
    try:
        earlier: Any = read_json(path / PROVENANCE)
    except FormatError:
        earlier = None
    step = None
    try:
        step = int(read_json(path / "trainer_state.json")["global_step"])
    except (FormatError, KeyError, TypeError, ValueError):
        pass
    return {"model": str(path), "step": step, "provenance": earlier}


def trained_length(start: dict[str, Any] | None) -> int | None:
    """The --max_seq_length the model a run starts from was last trained at, when its provenance says."""
    try:
        return int(start["provenance"]["data"][-1]["data"]["max_seq_length"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def write_provenance(output_dir: Path, data: dict[str, Any], history: list[dict[str, Any]], step: int,
                     start: dict[str, Any] | None = None, tokens_seen: dict[str, int] | None = None) -> None:
    """Beside the final model: every data the run trained on, the earlier ones with the step they ended at,
    the model it started from (``started_from``), when not a fresh one, and the real tokens trained from each
    corpus (``tokens_seen``), when known."""
    begin = history[-1]["until_step"] if history else 0
    record: dict[str, Any] = {"data": [*history, {"from_step": begin, "until_step": step, "data": data}]}
    if tokens_seen is not None:
        record["tokens_seen"] = tokens_seen
    if start is not None:
        record["started_from"] = start
    write_json_atomic(output_dir / PROVENANCE, record)
