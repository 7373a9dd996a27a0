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
    assert {"preprocess.run", "train.config"} <= front  # the one place both stages meet


def test_common_has_no_import_cycle():
    found = modules("common")
    graph = {m: {i for i in imps if i in found} - {m} for m, imps in found.items()}
    graph = {m: {d.removesuffix(".__init__") for d in deps} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
    assert "common.tokenizer_types" in graph["common.tokenizer"]  # the direction that remains, lazily


def test_the_preprocess_stage_runs_without_torch_and_train_without_the_preprocess_package():
    """The second half of the boundary at run time: ``mlm-train --help`` with ``preprocess`` unimportable."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['preprocess'] = None\n"
            "from train.__main__ import main\n"
            "sys.exit(main(['--help']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "--datasets_cache_dir" in r.stdout, r.stderr[-2000:]
