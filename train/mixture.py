"""How much of each named corpus a run sees: the weights from --mixture or --mixture_alpha, and the
start-up table that shows them.

Weights are a training choice, never the cache's: changing them rebuilds
nothing. Without either flag a corpus weighs its size in blocks, so a
mixture of corpora is read as their concatenation would be.
"""

from __future__ import annotations

import math

from common.errors import UserError

REPEATS_WARNING = 10  # passes over one corpus from which the start-up table warns of overfitting


def parse_mixture(value: str, names: list[str]) -> dict[str, float]:
    """``wiki=0.2,news=0.5`` -> {name: weight}, each a known corpus with a positive finite weight."""
    out: dict[str, float] = {}
    for entry in (x.strip() for x in value.split(",") if x.strip()):
        name, eq, number = entry.partition("=")
        name = name.strip()
        if not eq:
            raise UserError(f"--mixture {value}: {entry!r} is not NAME=WEIGHT (e.g. --mixture {names[0]}=0.5)")
        if name not in names:
            raise UserError(f"--mixture {value}: the cache has no corpus {name!r} (its corpora: {', '.join(names)})")
        if name in out:
            raise UserError(f"--mixture {value}: {name} is given twice")
        try:
            w = float(number)
        except ValueError:
            raise UserError(f"--mixture {value}: {name}'s weight {number!r} is not a number") from None
        if not (math.isfinite(w) and w >= 0):
            raise UserError(f"--mixture {value}: {name}'s weight {number} must be a number >= 0")
        out[name] = w
    if not any(out.values()):
        raise UserError(f"--mixture {value}: every weight is 0; give at least one corpus a weight")
    return out


def weights(names: list[str], blocks: dict[str, int], mixture: str | None, alpha: float | None) -> dict[str, float]:
    """Each corpus's share of the samples (summing to 1; 0: not trained on)."""
    if mixture:
        given = parse_mixture(mixture, names)
        raw = {n: given.get(n, 0.0) for n in names}
        empty = [n for n, w in raw.items() if w > 0 and blocks[n] == 0]
    else:
        total = sum(blocks.values())
        share = {n: blocks[n] / total if total else 0.0 for n in names}
        raw = {n: (share[n] ** alpha if share[n] > 0 else 0.0) if alpha is not None else share[n] for n in names}
        empty = []
    if empty:
        raise UserError(f"--mixture gives {empty[0]} a weight but its cache holds no blocks; add text there and "
                        "rebuild it, or leave it out of --mixture")
    total = sum(raw.values())
    if total == 0:
        raise UserError(f"the corpora ({', '.join(names)}) hold no blocks; add text and rebuild them")
    return {n: w / total for n, w in raw.items()}


def table(names: list[str], tokens: dict[str, int], blocks: dict[str, int], share: dict[str, float],
          samples: int) -> tuple[str, list[str]]:
    """The start-up table (one line a corpus) and a warning per corpus the run passes over too often."""
    width = max(12, *(len(n) for n in names))
    rows = [f"  {'corpus':<{width}} {'tokens':>14} {'blocks':>12} {'weight':>7} {'passes in this run':>19}",
            *[f"  {n:<{width}} {tokens[n]:>14,} {blocks[n]:>12,} {share[n]:>7.1%} "
              f"{share[n] * samples / blocks[n] if blocks[n] else 0:>19,.2f}" for n in names]]
    warnings = [f"warning: {n} is seen {share[n] * samples / blocks[n]:,.0f} times in this run ({share[n]:.1%} of "
                f"{samples:,} samples over {blocks[n]:,} blocks): a model overfits text it sees this often; lower "
                "its weight or add text" for n in names
                if blocks[n] and share[n] * samples / blocks[n] >= REPEATS_WARNING]
    return "\n".join(rows), warnings
