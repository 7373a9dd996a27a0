"""README.md's commands (and docs/layout.md's make block), run as written from a fresh working dir holding the
repo's Makefile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def readme_blocks(doc: str = "README.md") -> list[str]:
    """The ```bash blocks of the README (or of a guide under docs/)."""
    return re.findall(r"```bash\n(.*?)```", (ROOT / doc).read_text(encoding="utf-8"), flags=re.S)


def commands(block: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_the_two_commands_first():
    first = commands(readme_blocks()[0])
    assert first == ["make demo", "make test"]


def test_readme_is_a_front_page_and_every_guide_it_links_exists():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, "README.md is the front page: move detail into a guide under docs/"
    links = re.findall(r"\]\(((?:docs/)?[^)#\s]+\.md)(?:#[^)]*)?\)", text)
    assert {"docs/corpora.md", "docs/mixtures.md", "docs/flags.md", "docs/benchmarks.md"} <= set(links)
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links to guides that do not exist: {missing}"


def _repo_view(tmp_path: Path) -> None:
    """A fresh working dir holding the repo's Makefile, scripts, benches and the venv, as a checkout has them."""
    for name in ("Makefile", "pyproject.toml", "scripts", "bench"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))


@pytest.mark.slow
def test_the_five_minute_walk_runs_as_written(tmp_path):
    block = next(b for b in readme_blocks() if "mlm-train-tokenizer" in b)
    _repo_view(tmp_path)
    r = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert (tmp_path / "walk" / "model" / "model.safetensors").is_file()
    assert "fill-mask: the small dog <mask> the ball" in r.stdout


@pytest.mark.slow
def test_the_stages_block_runs_as_written(tmp_path):
    block = next(b for b in readme_blocks("docs/layout.md") if "make tokenizer" in b)
    _repo_view(tmp_path)
    subprocess.run([sys.executable, "scripts/make_corpus.py", "--out", "demo_out/text"], cwd=tmp_path, check=True)
    for cmd in commands(block):
        r = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert (tmp_path / "demo_out" / "spm_model" / "model.safetensors").is_file()


GUIDES = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name not in ("README.md", "flags.md"))


def test_every_guide_starts_from_a_command_block_and_the_index_lists_it():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for guide in GUIDES:
        text = (ROOT / "docs" / guide).read_text(encoding="utf-8")
        assert text.split("```bash", 1)[0].count("\n## ") == 0, f"{guide}: its first section comes before a command"
        assert f"({guide})" in index, f"docs/README.md does not list {guide}"


@pytest.mark.slow
@pytest.mark.parametrize("guide", [g for g in GUIDES if g != "layout.md"])  # layout.md's block runs `make test`
def test_each_guide_s_first_command_block_runs_as_written(tmp_path, guide):
    block = readme_blocks(f"docs/{guide}")[0]
    _repo_view(tmp_path)
    r = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"{guide}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
