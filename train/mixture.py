"""How much of each named corpus a run sees: the weights from --mixture or --mixture_alpha, and the
start-up table that shows them.

Weights are a training choice, never the cache's: changing them rebuilds
nothing. Without either flag a corpus weighs its size in blocks, so a
mixture of corpora is read as their concatenation would be.
"""

from __future__ import annotations

REPEATS_WARNING = 10  # passes over one corpus from which the start-up table warns of overfitting


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
