"""A preprocessed cache (train + validation) shared by the train-stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.__main__ import main as preprocess
from tests.corpus import write_shards


def build_cache(root: Path, tok: Path, max_seq_length: int = 32, *extra: str) -> Path:
    train, ev, cache = root / "txt_train", root / "txt_eval", root / "cache"
    write_shards(train, n_shards=3, lines_per_shard=300)
    write_shards(ev, n_shards=1, lines_per_shard=120, seed=9)
    (train / "shard_long.txt").write_text(" ".join(["language"] * 200) + "\nshort\n")
    assert preprocess(["--tokenizer_name_or_path", str(tok), "--train_dir", str(train), "--eval_dir", str(ev),
                       "--datasets_cache_dir", str(cache), "--max_seq_length", str(max_seq_length),
                       "--num_workers", "1", *extra]) == 0
    return cache


@pytest.fixture(scope="session")
def bpe_cache(tmp_path_factory, bpe_dir) -> Path:
    return build_cache(tmp_path_factory.mktemp("bpe_cache"), bpe_dir)


def train_with_callbacks(argv: list[str], callbacks=()) -> None:
    """``mlm-train argv`` (its main) with extra Trainer callbacks, to watch inside a real run's steps."""
    import train.run as run_module
    from train.__main__ import main

    original = run_module.train
    run_module.train = lambda *a, **k: original(*a, **{**k, "callbacks": list(callbacks)})
    try:
        assert main(argv) == 0
    finally:
        run_module.train = original
