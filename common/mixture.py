"""Each named corpus's share of a mixture: the one reading of --mixture and --mixture_alpha, for the train
stage (its samples) and the tokenizer's sample (its bytes), so the same flags mean the same mix in both."""

from __future__ import annotations

import math

from common.errors import UserError


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


def weights(names: list[str], blocks: dict[str, int], mixture: str | None, alpha: float | None,
            unit: str = "blocks") -> dict[str, float]:
    """Each corpus's share (summing to 1; 0: left out), from ``--mixture``, or its share of ``blocks`` (its
    size, in ``unit``: a run's blocks, a tokenizer sample's bytes) to the power ``--mixture_alpha``, or by size."""
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
        raise UserError(f"--mixture gives {empty[0]} a weight but it holds no {unit}; add text there (and rebuild "
                        "it), or leave it out of --mixture")
    total = sum(raw.values())
    if total == 0:
        raise UserError(f"the corpora ({', '.join(names)}) hold no {unit}; add text and rebuild them")
    return {n: w / total for n, w in raw.items()}
