"""The stages' boundary, read from the source (every import, at any depth, not a convention):
preprocess -> common <- train, only run_mlm.py uses both, and common/ has no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("common", "preprocess", "train")


def imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function, as a dotted name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from common import tokenizer_types`
    return found


def modules(package: str) -> dict[str, set[str]]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): imports(p) for p in (ROOT / package).rglob("*.py")}


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_stages_never_import_each_other():
    for package, forbidden in (("train", {"preprocess", "run_mlm"}), ("preprocess", {"train", "run_mlm"}),
                               ("common", {"preprocess", "train", "run_mlm"})):
        found = modules(package)
        assert found, package
        leaks = {m: sorted(i for i in imps if _top(i) in forbidden) for m, imps in found.items()}
        assert not {m: v for m, v in leaks.items() if v}, f"{package} imports {forbidden}"
    front = imports(ROOT / "run_mlm.py")
    assert {"preprocess.corpora", "train.config"} <= front  # the one place both stages meet


def _graph(package: str) -> dict[str, set[str]]:
    """Which modules of ``package`` each of its modules imports, at any depth of its code."""
    found = modules(package)
    graph = {m: {i.removesuffix(".__init__") for i in imps if i in found} - {m} for m, imps in found.items()}
    return {m.removesuffix(".__init__"): deps for m, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of ``graph`` as the path that closes it, or None."""
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        if state.get(m) == 1:
            return [*path, m]
        if state.get(m) == 2:
            return None
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if (cycle := visit(d, [*path, m])) is not None:
                return cycle
        state[m] = 2
        return None

    return next((c for m in sorted(graph) if (c := visit(m, [])) is not None), None)


def test_common_has_no_import_cycle():
    graph = _graph("common")
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
    assert "common.tokenizer_types" in graph["common.tokenizer"]  # the direction that remains, lazily


def test_a_cycle_is_found():
    """The checker itself: a graph with a cycle is reported, one without is not."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_preprocess_has_no_import_cycle_and_control_flows_one_way():
    """plan -> piece job -> executor -> commit -> run -> corpora (run once a named corpus): no module imports
    one further along, so each reads without the ones after it (the executors only schedule; the plan knows
    nothing of running)."""
    graph = _graph("preprocess")
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
    tiers = [["plan"], ["piece"], ["executors", "ray_executor"], ["commit"], ["run"], ["corpora"]]
    tiers = [{f"preprocess.{m}" for m in tier} for tier in tiers]
    pipeline = set().union(*tiers)
    for k, tier in enumerate(tiers):
        later = set().union(*tiers[k + 1:])
        for m in tier:
            assert not graph[m] & later, f"{m} imports {sorted(graph[m] & later)}, which run after it"
    for m in set(graph) - pipeline - {"preprocess.__main__"}:  # the parts (formats, readers, scan, encode ...)
        assert not graph[m] & pipeline, f"{m} imports {sorted(graph[m] & pipeline)}: a part reaches into the pipeline"
    assert graph["preprocess.executors"] >= {"preprocess.piece"}  # the executors run piece jobs, nothing else
    assert "preprocess.piece" in graph["preprocess.ray_executor"] and "preprocess.build" not in graph


def test_the_preprocess_stage_runs_without_torch_and_train_without_the_preprocess_package():
    """The second half of the boundary at run time: ``mlm-train --help`` with ``preprocess`` unimportable."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['preprocess'] = None\n"
            "from train.__main__ import main\n"
            "sys.exit(main(['--help']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "--datasets_cache_dir" in r.stdout, r.stderr[-2000:]
