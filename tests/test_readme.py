"""README.md's commands, run as written from a fresh working dir holding the repo's Makefile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def readme_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_the_two_commands_first():
    first = commands(readme_blocks()[0])
    assert first == ["make demo", "make test"]


@pytest.mark.slow
def test_the_stages_block_runs_as_written(tmp_path):
    block = next(b for b in readme_blocks() if "make tokenizer" in b)
    for name in ("Makefile", "pyproject.toml", "scripts"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    subprocess.run([sys.executable, "scripts/make_corpus.py", "--out", "demo_out/text"], cwd=tmp_path, check=True)
    for cmd in commands(block):
        r = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert (tmp_path / "demo_out" / "spm_model" / "model.safetensors").is_file()
