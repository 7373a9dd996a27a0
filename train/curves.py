"""The picture of a run for its model card: the training loss and each held-out loss against tokens seen.

Drawn from trainer_state.json's log history with matplotlib's Agg canvas
(no display, no pyplot state), when matplotlib is installed (the ``plot``
extra); without it the card says how to get it and the run goes on. The x
axis is ``tokens_seen`` where the log records it (an evaluation entry, which
does not, takes the count of the training entries around its step), else
the optimizer step, labelled so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from common.format import tmp_name

NO_MATPLOTLIB = ("no picture of the training curves: matplotlib is not installed (`pip install matplotlib`, or "
                 "`pip install -e '.[plot]'` in the mlm-pretrain checkout); the next save draws it")
NOTHING_YET = "no picture of the training curves yet: no loss was logged"


def series(history: list[dict[str, Any]]) -> tuple[dict[str, tuple[list[float], list[float]]], str]:
    """(name -> (x, loss)) for ``loss`` and every ``eval_*_loss``, and the x axis's label."""
    entries = [h for h in history if isinstance(h, dict) and isinstance(h.get("step"), (int, float))]
    counted = [(h["step"], h["tokens_seen"]) for h in entries if isinstance(h.get("tokens_seen"), (int, float))]
    if counted:
        steps, seen = np.array(counted, dtype=float).T
        order = np.argsort(steps, kind="stable")

        def x_of(h: dict[str, Any]) -> float:
            if isinstance(h.get("tokens_seen"), (int, float)):
                return float(h["tokens_seen"])
            return float(np.interp(h["step"], steps[order], seen[order]))

        label = "tokens seen"
    else:
        def x_of(h: dict[str, Any]) -> float:
            return float(h["step"])

        label = "optimizer step (tokens seen not recorded)"
    held = sorted({k for h in entries for k in h if k.startswith("eval_") and k.endswith("_loss")})
    names = {"loss": "training loss", "eval_loss": "held-out" if held == ["eval_loss"] else "held-out: all corpora",
             **{k: f"held-out: {k[len('eval_'):-len('_loss')]}" for k in held if k != "eval_loss"}}
    out = {}
    for key in ["loss", *held]:
        points = [(x_of(h), float(h[key])) for h in entries if isinstance(h.get(key), (int, float))]
        if points:
            out[names[key]] = ([p[0] for p in points], [p[1] for p in points])
    return out, label


def draw(history: list[dict[str, Any]], path: Path) -> str | None:
    """Write the picture to ``path`` (replaced at once); None when drawn, else why not, in words."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return NO_MATPLOTLIB
    lines, label = series(history)
    if not lines:
        return NOTHING_YET
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, (x, y) in lines.items():
        ax.plot(x, y, label=name, marker="o" if len(x) < 20 else None, markersize=3,
                linewidth=1.0 if name == "training loss" else 1.8)
    ax.set_xlabel(label)
    ax.set_ylabel("masked-LM loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(tmp_name(path.name, dotted=True))
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return None
