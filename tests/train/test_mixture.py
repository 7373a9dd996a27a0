"""Named corpora and their mixture: each corpus its own part of the cache, weights at train time only,
an order computed from (seed, global sample index)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from preprocess.__main__ import main as preprocess_main
from tests.corpus import write_shards
from tests.train import record
from train.__main__ import main as train_main
from train.order import PERIOD, Blend, Corpus, DataOrder, Permutation
from train.sampling import SampleSampler

WEIGHTS = {"wiki": 0.5, "news": 0.3, "social": 0.2}


def _texts(root: Path) -> dict[str, Path]:
    dirs = {"wiki": root / "wiki", "news": root / "news", "social": root / "social"}
    write_shards(dirs["wiki"], n_shards=2, lines_per_shard=400, seed=1)
    write_shards(dirs["news"], n_shards=2, lines_per_shard=400, seed=2)
    write_shards(dirs["social"], n_shards=1, lines_per_shard=80, seed=3)  # 10x smaller than the others
    return dirs


def _preprocess(capsys, tok: Path, dirs: dict[str, Path], cache: Path) -> str:
    spec = ",".join(f"{n}={d}" for n, d in dirs.items())
    assert preprocess_main(["--tokenizer_name_or_path", str(tok), "--train_dir", spec, "--datasets_cache_dir",
                            str(cache), "--max_seq_length", "32", "--validation_split_percentage", "10"]) == 0
    return capsys.readouterr().out


def _snapshot(cache: Path) -> dict[str, tuple[int, int]]:
    """Every cache file but the leases training writes, with its size and mtime."""
    return {str(p.relative_to(cache)): (p.stat().st_size, p.stat().st_mtime_ns) for p in cache.rglob("*")
            if p.is_file() and "readers" not in p.parts}


def _train(tok: Path, cache: Path, out: Path, *flags: str) -> None:
    assert train_main(["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length",
                       "32", "--architecture", "roberta-tiny", "--output_dir", str(out), "--max_steps", "3",
                       "--per_device_train_batch_size", "8", "--save_strategy", "no", "--report_to", "none",
                       "--seed", "3", *flags]) == 0


def test_three_corpora_mixed_by_weight_through_the_cli(capsys, monkeypatch, tmp_path, bpe_dir):
    dirs, cache = _texts(tmp_path / "text"), tmp_path / "cache"
    out = _preprocess(capsys, bpe_dir, dirs, cache)
    assert json.loads((cache / "corpora.json").read_text()) == {"corpora": ["wiki", "news", "social"]}
    for name in dirs:
        assert (cache / "corpora" / name / "train" / "manifest.json").is_file()
        assert f"{name} train: 0 shards reused" in out and f"{name} validation:" in out
    before = _snapshot(cache)
    from preprocess.inspect_cache import main as inspect_main

    assert inspect_main(["show", str(cache)]) == 0
    shown = capsys.readouterr().out
    assert "3 named corpora" in shown and all(f"corpora/{n}/train" in shown for n in dirs)
    assert inspect_main(["status", str(cache)]) == 0
    capsys.readouterr()
    assert inspect_main(["show", "--json", str(cache)]) == 0
    assert list(json.loads(capsys.readouterr().out)) == [f"{n}/{s}" for n in dirs for s in ("train", "validation")]

    monkeypatch.setattr(record, "TRAINERS", [])
    record.install(monkeypatch.setattr)
    _train(bpe_dir, cache, tmp_path / "out", "--mixture", ",".join(f"{n}={w}" for n, w in WEIGHTS.items()))
    err = capsys.readouterr().err
    assert "the mixture of 3 corpora" in err and "social" in err and "passes in this run" in err
    trainer = record.TRAINERS[-1]
    order = trainer.data_order()
    offsets = {c.name: (c.offset, c.offset + c.blocks) for c in order.corpora}
    assert offsets["social"][1] - offsets["social"][0] < (offsets["wiki"][1] - offsets["wiki"][0]) / 5
    blocks = order.blocks(0, 10_000)
    for name, w in WEIGHTS.items():
        lo, hi = offsets[name]
        mine = blocks[(blocks >= lo) & (blocks < hi)]
        assert abs(len(mine) / 10_000 - w) < 0.01, (name, len(mine))
        n = hi - lo  # the first pass over a corpus is all of it, each block once; repeats only after
        assert len(set(mine[:n].tolist())) == min(n, len(mine)) and (len(mine) <= n or mine[n] in set(mine[:n]))
    metrics = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert {f"eval_{n}_loss" for n in WEIGHTS} | {"eval_loss"} <= set(metrics)  # a loss per corpus, and their mean

    _train(bpe_dir, cache, tmp_path / "out2", "--mixture", "wiki=1,social=3")  # other weights, a corpus left out
    err = capsys.readouterr().err
    assert "news" in err and "0.0%" in err.split("news", 1)[1].splitlines()[0]
    assert _snapshot(cache) == before  # weights never touch the cache
    assert "cache is fresh" in _preprocess(capsys, bpe_dir, dirs, cache)

    (dirs["news"] / "shard_000.txt").write_text("a line of news that was edited\n" * 50)
    out = _preprocess(capsys, bpe_dir, dirs, cache)
    assert "news train: cache is fresh" not in out and "tokenized" in out.split("news train:", 1)[1].splitlines()[0]
    assert "wiki train: cache is fresh" in out and "social train: cache is fresh" in out


def test_named_and_unnamed_layouts_never_mix_and_bad_weights_are_one_line(capsys, tmp_path, bpe_dir):
    dirs, cache = _texts(tmp_path / "text"), tmp_path / "cache"
    _preprocess(capsys, bpe_dir, dirs, cache)
    rc = preprocess_main(["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(dirs["wiki"]),
                          "--datasets_cache_dir", str(cache), "--max_seq_length", "32"])
    assert rc == 2 and "holds named corpora" in capsys.readouterr().err
    for flags, says in ((["--mixture", "wiki=1,blogs=2"], "no corpus 'blogs'"),
                        (["--mixture", "wiki=0"], "every weight is 0"),
                        (["--mixture", "wiki=1", "--mixture_alpha", "0.3"], "not both"),
                        (["--train_dir", str(dirs["wiki"])], "give --train_dir as NAME=DIR")):
        assert train_main(["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(cache),
                           "--max_seq_length", "32", "--output_dir", str(tmp_path / "o"), *flags]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err


def _deviation(weights: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over 1.5 periods (across a period's end): each corpus's realised count at every prefix minus its share
    of the prefix (the share as apportioned to whole samples a period), and the blend's (corpus, j)."""
    blend = Blend(weights)
    corpus, j = blend(np.arange(3 * PERIOD // 2))
    t = np.arange(1, len(corpus) + 1)
    share = blend.counts / PERIOD
    return np.stack([np.cumsum(corpus == c) - share[c] * t for c in range(len(weights))]), corpus, j


def test_the_blend_keeps_every_prefix_within_one_sample_of_its_share():
    """Webster's interleave (corpus c's i-th sample at time (i + 1/2) / q_c), checked against its own bound, not
    a slack that grows with the prefix: a half-sample shift ((i + 1) / q_c, or i / q_c) reaches 1.5 and 1.0 here."""
    w = [0.5, 0.3, 0.15, 0.05]
    counts = Blend(w).counts
    assert counts.sum() == PERIOD and (np.abs(counts - np.array(w) * PERIOD) < 1).all()  # the weights to samples
    dev, corpus, j = _deviation(w)
    worst = float(np.abs(dev).max())
    assert worst < 1.0, worst  # Webster's rule gives 0.70 for these weights
    for c in range(len(w)):
        mine = corpus == c
        assert np.array_equal(j[mine], np.arange(mine.sum()))  # each corpus's samples in turn, none skipped
    for two in ([0.7, 0.3], [0.9, 0.1], [0.123, 0.877]):
        # two corpora: each count is its share of the prefix rounded to the nearest (|e_0 (1 - q) - q e_1| <= 1/2
        # with both corpora's continuous-time errors e_c within 1/2)
        assert np.abs(_deviation(two)[0]).max() <= 0.5 + 1e-9, two


def test_the_order_is_a_permutation_each_pass_and_computed_at_any_index():
    for n in (1, 2, 3, 5, 1000, 1024, 1025):
        assert sorted(Permutation(n, 9, 1)(np.arange(n)).tolist()) == list(range(n))
    assert Permutation(1000, 9, 1)(np.arange(1000)).tolist() != Permutation(1000, 9, 2)(np.arange(1000)).tolist()
    order = DataOrder([Corpus("a", None, 0, 700), Corpus("b", None, 700, 300)], [0.5, 0.5], "random", 1, 16)
    assert np.array_equal(order.blocks(500, 100), order.blocks(0, 1000)[500:600])  # a function of the index alone


def test_the_sampler_answers_at_sample_a_billion_in_under_a_second():
    """Resume is O(1) in the steps done: nothing before the start is walked or materialised."""
    corpora = [Corpus(f"c{i}", None, i * 200_000_000, 200_000_000) for i in range(3)]
    order = DataOrder(corpora, [0.6, 0.3, 0.1], "random", 5, 256)
    t = time.perf_counter()
    it = iter(SampleSampler(order, start=10**9))
    first = [next(it) for _ in range(256)]
    assert time.perf_counter() - t < 1.0
    assert [g for g, _ in first] == list(range(10**9, 10**9 + 256))
    assert np.array_equal([b for _, b in first], order.blocks(10**9, 256))


def test_weights_of_corpora_without_blocks_are_one_line():
    from common.errors import UserError
    from common.mixture import weights

    assert weights(["a", "b"], {"a": 3, "b": 1}, None, None) == {"a": 0.75, "b": 0.25}
    assert weights(["a", "b"], {"a": 3, "b": 0}, "a=1,b=0", None) == {"a": 1.0, "b": 0.0}
    for mixture, alpha in ((None, None), (None, 0.3)):
        with pytest.raises(UserError, match="hold no blocks"):
            weights(["a", "b"], {"a": 0, "b": 0}, mixture, alpha)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_mixture_alpha_weighs_each_corpus_by_its_blocks_to_the_power_alpha(alpha):
    """XLM-R's smoothing: weight ~ (share of the blocks) ** alpha, normalised; 0 uniform, 1 by size; a corpus
    without blocks weighs nothing, whatever alpha."""
    from common.mixture import weights

    blocks = {"big": 9000, "mid": 900, "small": 100, "empty": 0}
    raw = {n: b**alpha if b else 0.0 for n, b in blocks.items()}
    expected = {n: r / sum(raw.values()) for n, r in raw.items()}
    got = weights(list(blocks), blocks, None, alpha)
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    if alpha < 1:
        assert got["small"] > blocks["small"] / sum(blocks.values())  # the small corpus is upsampled


def test_a_tiny_upsampled_corpus_is_a_fresh_permutation_every_pass():
    """A corpus of 3 blocks at half the weight: 2^19 samples from it, each pass all 3 blocks (vectorised over
    passes: it once cost a Python loop per pass)."""
    order = DataOrder([Corpus("big", None, 0, 4_000_000), Corpus("tiny", None, 4_000_000, 3)], [0.5, 0.5],
                      "random", 2, 32)
    blocks = order.blocks(0, 1 << 20)
    tiny = blocks[blocks >= 4_000_000] - 4_000_000
    assert len(tiny) == 1 << 19
    passes = tiny[: len(tiny) // 3 * 3].reshape(-1, 3)
    assert (np.sort(passes, axis=1) == [0, 1, 2]).all() and len({tuple(p) for p in passes.tolist()}) == 6


@pytest.mark.parametrize("spec, says", [("wiki=a,b,news=c", {"wiki": "a,b", "news": "c"}), ("a,b", None)])
def test_name_dir_entries(spec, says):
    from common.corpora import parse_named

    assert parse_named(spec, "--train_dir") == says


def _two_corpora(capsys, tok: Path, root: Path) -> Path:
    """Two small corpora, a validation split each: a Trainer epoch of a few steps at batch 8."""
    dirs = {"wiki": root / "wiki", "news": root / "news"}
    write_shards(dirs["wiki"], n_shards=1, lines_per_shard=15, seed=1)
    write_shards(dirs["news"], n_shards=1, lines_per_shard=8, seed=2)
    cache = root / "cache"
    _preprocess(capsys, tok, dirs, cache)
    return cache


def test_a_mixture_run_reports_the_mean_eval_loss_and_its_epoch_goes_on_across_a_resume(capsys, tmp_path, bpe_dir):
    """Its last step evaluated: all_results.json, eval_results.json and the log hold eval_loss and
    eval_perplexity, the per-corpus losses' mean by blocks (they held the per-corpus keys only). Resumed
    mid-epoch, the logged epoch is the uninterrupted run's (it started over from the epoch's start)."""
    cache = _two_corpora(capsys, bpe_dir, tmp_path)
    flags = ("--max_steps", "8", "--save_strategy", "steps", "--save_steps", "5", "--eval_strategy", "steps",
             "--eval_steps", "4", "--logging_steps", "1", "--disable_tqdm", "true")
    full, cut = tmp_path / "full", tmp_path / "cut"
    _train(bpe_dir, cache, full, *flags)
    capsys.readouterr()
    blocks = {n: json.loads((cache / "corpora" / n / "validation" / "manifest.json").read_text())["totals"]["blocks"]
              for n in ("wiki", "news")}
    for name in ("all_results.json", "eval_results.json"):
        metrics = json.loads((full / name).read_text())
        mean = sum(metrics[f"eval_{n}_loss"] * k for n, k in blocks.items()) / sum(blocks.values())
        assert metrics["eval_loss"] == pytest.approx(mean, rel=1e-9), name
        assert metrics["eval_perplexity"] == pytest.approx(np.exp(mean), rel=1e-9), name
    history = json.loads((full / "trainer_state.json").read_text())["log_history"]
    assert sorted(h["step"] for h in history if "eval_loss" in h and "eval_perplexity" in h) == [4, 8]

    epochs = {h["step"]: h["epoch"] for h in history if "loss" in h}
    per_epoch = round(1 / epochs[1])  # steps a Trainer epoch holds
    assert sorted(epochs) == list(range(1, 9)) and 5 % per_epoch and per_epoch < 4  # resumed mid-epoch, before an epoch ends
    assert all(epochs[k] == pytest.approx(k / per_epoch, rel=1e-12) for k in epochs)
    cut.mkdir()
    (full / "checkpoint-5").rename(cut / "checkpoint-5")
    _train(bpe_dir, cache, cut, *flags, "--resume_from_checkpoint", "latest")
    resumed = json.loads((cut / "trainer_state.json").read_text())["log_history"]
    assert {h["step"]: h["epoch"] for h in resumed if "loss" in h} == epochs  # exactly, steps 1-5 from the checkpoint
