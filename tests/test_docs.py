"""docs/flags.md says what the commands' parsers say: regenerated in memory and compared (`make docs` writes it)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
from dataclasses import field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("flag_reference", ROOT / "scripts" / "flag_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return load_generator()


def test_flag_reference_matches_the_parsers(gen):
    written = (ROOT / "docs" / "flags.md").read_text(encoding="utf-8")
    fresh = gen.reference()
    diff = "".join(list(difflib.unified_diff(written.splitlines(True), fresh.splitlines(True), "docs/flags.md",
                                             "the parsers"))[:40])
    assert written == fresh, f"docs/flags.md differs from what the commands' parsers say: run `make docs`\n{diff}"


def _extra_field(cls: type) -> type:
    """``cls`` with one more documented field, as a new flag is added."""
    return dataclasses.make_dataclass(cls.__name__, [("dummy_flag", int, field(default=7, metadata={"help": "New."}))],
                                      bases=(cls,))


def _new_tokenizer_flag(monkeypatch):
    from preprocess import train_tokenizer

    build = train_tokenizer.build_parser

    def with_flag():
        parser = build()
        parser.add_argument("--dummy_flag", type=int, default=7, help="New.")
        return parser

    monkeypatch.setattr(train_tokenizer, "build_parser", with_flag)


def _new_preprocess_field(monkeypatch):
    import preprocess.config

    monkeypatch.setattr(preprocess.config, "PreprocessConfig", _extra_field(preprocess.config.PreprocessConfig))


def _new_train_field(monkeypatch):
    import train.flags

    model, *rest = train.flags.OWN_CLASSES
    monkeypatch.setattr(train.flags, "OWN_CLASSES", (_extra_field(model), *rest))


@pytest.mark.parametrize("add", [_new_tokenizer_flag, _new_preprocess_field, _new_train_field],
                         ids=["add_argument", "preprocess field", "train field"])
def test_a_new_flag_makes_the_reference_stale(gen, monkeypatch, add):
    """The check can fail: a flag added to a parser (as the generator reads it) changes the reference."""
    before = gen.reference()
    add(monkeypatch)
    after = gen.reference()
    assert after != before
    assert "| `--dummy_flag` | `7` | New. |" in after


def test_the_reference_is_the_same_on_any_machine(gen, monkeypatch):
    """--num_workers defaults to the core count, worked out at run time: the reference says "all cores",
    whatever this machine has."""
    from preprocess import config, train_tokenizer

    before = gen.reference()
    monkeypatch.setattr(train_tokenizer, "available_cores", lambda: 12345)
    monkeypatch.setattr(config, "available_cores", lambda: 12345)
    after = gen.reference()
    assert after == before
    assert "12345" not in after
