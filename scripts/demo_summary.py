"""Say where the demo put everything, and whether the model learned (eval loss first vs last)."""

import json
import sys
from pathlib import Path


def main() -> int:
    demo = Path(sys.argv[1])
    history = json.loads((demo / "model" / "trainer_state.json").read_text())["log_history"]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    print("== demo done")
    for what, where in [("corpus", "text"), ("tokenizer", "tokenizer"), ("cache", "cache"), ("model", "model")]:
        print(f"  {what:<10} {demo / where}")
    print(f"  eval loss  {evals[0]:.3f} at the first evaluation -> {evals[-1]:.3f} at the last ({len(evals)} evaluations)")
    if not evals[-1] < evals[0]:
        print("error: eval loss did not fall", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
