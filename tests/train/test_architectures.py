"""Every shipped architecture: its config is the published shape, its ids and vocabulary are the tokenizer's, its
positions are checked by its own rule, and mlm-train trains it on the fast path (no host-device wait inside a step,
no graph break) into a model that AutoModelForMaskedLM and fill-mask load, without a warning about token ids."""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, BertConfig, ModernBertConfig, pipeline

from common.manifest import SpecialIds
from tests.train.conftest import build_cache, train_with_callbacks
from tests.train.test_model import config_file, special_ids
from tests.train.test_step import Waits, _gpu_flags, _waits
from train.flags import ARCHITECTURES, CONFIG_DIR
from train.model import ModelError, build_model, check_positions, fit_to_tokenizer, load_config

PLACEHOLDERS = {"vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"}
NOT_SHAPE = {"_name_or_path", "architectures", "transformers_version", "global_attn_every_n_layers"}


def _fields(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in NOT_SHAPE}


def _on_meta(config) -> int:
    with torch.device("meta"):  # the shapes without the memory
        return AutoModelForMaskedLM.from_config(config).num_parameters()


def test_shipped_configs_are_the_published_shapes():
    """ModernBERT-base is ModernBertConfig's defaults (the class documents answerdotai/ModernBERT-base), bert-base
    BertConfig's (bert-base-uncased); large differs from base in its four sizes only; parameters as published."""
    base = load_config("modernbert-base", None, None)
    assert _fields(base) == _fields(ModernBertConfig())
    assert (base.hidden_size, base.num_hidden_layers, base.num_attention_heads, base.intermediate_size) == (768, 22, 12, 1152)
    assert base.layer_types == ["full_attention" if i % 3 == 0 else "sliding_attention" for i in range(22)]
    assert (base.local_attention, base.max_position_embeddings, base.hidden_activation) == (128, 8192, "gelu")
    assert base.rope_parameters["full_attention"]["rope_theta"] == 160_000.0
    assert base.rope_parameters["sliding_attention"]["rope_theta"] == 10_000.0
    large = load_config("modernbert-large", None, None)
    sizes = {"hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16, "intermediate_size": 2624,
             "layer_types": ["full_attention" if i % 3 == 0 else "sliding_attention" for i in range(28)]}
    assert _fields(large) == {**_fields(base), **sizes}
    bert = load_config("bert-base", None, None)
    assert _fields(bert) == _fields(BertConfig())
    millions = {n: round(_on_meta(load_config(n, None, None)) / 1e6) for n in ("modernbert-base", "modernbert-large",
                                                                              "bert-base")}
    assert millions == {"modernbert-base": 150, "modernbert-large": 396, "bert-base": 110}


def test_tiny_configs_are_the_size_of_roberta_tiny():
    tiny = {n: load_config(n, None, None) for n in ARCHITECTURES if n.endswith("-tiny")}
    assert set(tiny) == {"roberta-tiny", "modernbert-tiny"}
    assert {c.hidden_size for c in tiny.values()} == {64}
    sizes = {n: _on_meta(c) for n, c in tiny.items()}
    assert 0.8 < sizes["modernbert-tiny"] / sizes["roberta-tiny"] < 1.25
    assert set(tiny["modernbert-tiny"].layer_types) == {"full_attention", "sliding_attention"}


def test_a_fresh_model_gets_every_special_id_and_the_vocabulary_of_the_tokenizer(wordpiece_dir):
    tok = AutoTokenizer.from_pretrained(wordpiece_dir)
    ids = special_ids(tok)
    assert (ids.bos, ids.eos) == (tok.cls_token_id, tok.sep_token_id)
    config = load_config("modernbert-base", None, None)
    fit_to_tokenizer(config, len(tok), ids, fresh=True)
    assert config.vocab_size == len(tok) > 200
    assert (config.cls_token_id, config.bos_token_id) == (tok.cls_token_id,) * 2
    assert (config.sep_token_id, config.eos_token_id) == (tok.sep_token_id,) * 2
    assert config.pad_token_id == tok.pad_token_id
    bert = load_config("bert-base", None, None)
    fit_to_tokenizer(bert, len(tok), ids, fresh=True)
    assert (bert.pad_token_id, bert.bos_token_id, bert.eos_token_id) == (tok.pad_token_id, ids.bos, ids.eos)
    assert not hasattr(bert, "cls_token_id")  # only the ids a config carries: nothing added to config.json


def test_a_pretrained_model_is_checked_for_every_special_id(wordpiece_dir):
    tok = AutoTokenizer.from_pretrained(wordpiece_dir)
    ids = special_ids(tok)
    config = load_config("modernbert-base", None, None)
    fit_to_tokenizer(config, len(tok), ids, fresh=True)
    fit_to_tokenizer(config, len(tok), ids, fresh=False)  # its own tokenizer: fine
    config.sep_token_id = tok.mask_token_id
    with pytest.raises(ModelError, match=r"^special token ids differ \(sep_token_id: model 4, tokenizer 3\); train "
                                         "with the tokenizer the model was trained with$"):
        fit_to_tokenizer(config, len(tok), ids, fresh=False)
    bert = load_config("bert-base", None, None)  # bos and eos unset (None), as bert-base-uncased: not a mismatch
    bert.vocab_size = len(tok)
    bert.pad_token_id = tok.pad_token_id
    fit_to_tokenizer(bert, len(tok), ids, fresh=False)
    unfitted = load_config("modernbert-base", None, None)  # placeholders: cls 50281, pad 50283 ...
    unfitted.vocab_size = 50_000
    with pytest.raises(ModelError, match="outside the vocabulary of 50000 .*pad_token_id 50283"):
        fit_to_tokenizer(unfitted, 400, SpecialIds(50281, 50282, 50283, None, None), fresh=False)


@pytest.mark.parametrize(("name", "fits", "too_long", "need"), [
    ("roberta-tiny", 512, 513, "515"),  # positions start after the pad id (1): 2 of its 514 unused
    ("bert-base", 512, 513, "513"),  # absolute positions from 0
    ("modernbert-tiny", 8192, 8193, "8193"),  # rotary, built for 8192
])
def test_positions_are_checked_by_the_family_s_rule(name, fits, too_long, need):
    config = load_config(name, None, None)
    config.pad_token_id = 1
    check_positions(config, fits)
    with pytest.raises(ModelError, match=f"lower --max_seq_length or use --config_name with max_position_embeddings "
                                         f">= {need}$"):
        check_positions(config, too_long)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_a_config_asking_for_flash_attention_without_the_package_is_one_line(tmp_path):
    cfg = json.loads((CONFIG_DIR / "modernbert-tiny.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**cfg, "attn_implementation": "flash_attention_2"}))
    with pytest.raises(ModelError, match=r"^FlashAttention2 .*; install it, or drop attn_implementation from the "
                                         r"config \(sdpa is the default\)$"):
        build_model("x", str(tmp_path / "c.json"), None, 500, SpecialIds(0, 2, 1, 3, 4), 32)


# --------------------------------------------------------------------------- through mlm-train

# shipped name -> (the tokenizer fixture it trains with, whether it goes by --architecture or, shrunk, --config_name)
CLI_RUNS = {"modernbert-tiny": ("bpe", True), "bert-base": ("wordpiece", False), "modernbert-base": ("bpe", False)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory, bpe_dir, wordpiece_dir) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("arch")
    return {"bpe": (bpe_dir, build_cache(root / "bpe", bpe_dir)),
            "wordpiece": (wordpiece_dir, build_cache(root / "wp", wordpiece_dir))}


def _model_flags(name: str, where: Path) -> list[str]:
    by_name = CLI_RUNS[name][1]
    return ["--architecture", name] if by_name else ["--config_name", str(config_file(name, where))]


def _train(tmp_path: Path, tok: Path, cache: Path, name: str, *flags: str, callbacks=()) -> Path:
    out = tmp_path / "out"
    argv = ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", "32",
            *_model_flags(name, tmp_path), "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--report_to", "none", "--input_check", "off", *flags]
    train_with_callbacks(argv, callbacks)
    return out


class TokenIdWarnings(logging.Handler):
    """What transformers logs (its own logger, which may not propagate) and warns about token ids."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())

    def __enter__(self) -> TokenIdWarnings:
        logging.Logger.warning_once.cache_clear()  # a message said once before this test is said again
        logging.getLogger("transformers").addHandler(self)
        self._caught = warnings.catch_warnings(record=True)
        self._records = self._caught.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc) -> None:
        self._caught.__exit__(*exc)
        logging.getLogger("transformers").removeHandler(self)
        self.seen += [str(w.message) for w in self._records]

    def about_ids(self) -> list[str]:
        return [m for m in self.seen if any(s in m for s in ("token_id", "token id", "cls_token", "sep_token"))]


def test_the_recorder_sees_transformers_warn_about_an_id_outside_the_vocabulary(tmp_path):
    """What the no-warning test below would see if the ids were left as the shipped placeholders."""
    config = load_config("modernbert-tiny", None, None)
    config.vocab_size = 400
    with TokenIdWarnings() as seen:
        config.validate()
        config.save_pretrained(tmp_path)
        AutoConfig.from_pretrained(tmp_path)
    assert any("cls_token_id" in m for m in seen.about_ids()), seen.seen


@pytest.mark.parametrize("name", CLI_RUNS)
def test_mlm_train_trains_saves_and_fill_mask_loads_without_a_token_id_warning(tmp_path, caches, name):
    tok, cache = caches[CLI_RUNS[name][0]]
    with TokenIdWarnings() as seen:
        out = _train(tmp_path, tok, cache, name, "--max_steps", "3", "--save_strategy", "no")
        model = AutoModelForMaskedLM.from_pretrained(out)
        fill = pipeline("fill-mask", model=str(out), tokenizer=str(out), device="cpu")
        mask = AutoTokenizer.from_pretrained(out).mask_token
        answers = fill(f"the {mask} of")
    assert seen.about_ids() == []
    family = load_config(name, None, None)
    assert type(model).__name__ == family.architectures[0] and "forward" not in vars(model)
    ids = special_ids(AutoTokenizer.from_pretrained(tok))
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(tok))
    for attr, role in (("pad_token_id", "pad"), ("bos_token_id", "bos"), ("cls_token_id", "bos"),
                       ("eos_token_id", "eos"), ("sep_token_id", "eos")):
        if hasattr(family, attr):
            assert getattr(model.config, attr) == getattr(ids, role), attr
    assert len(answers) == 5 and all(a["token"] < model.config.vocab_size for a in answers)


@pytest.mark.parametrize("name", ["modernbert-tiny", pytest.param("bert-base", marks=pytest.mark.slow)])
def test_no_step_waits_for_the_gpu(tmp_path, caches, name):
    """As tests/train/test_step.py checks RoBERTa: nothing inside a step asks the GPU for a value."""
    tok, cache = caches[CLI_RUNS[name][0]]
    waits = Waits()
    with waits:
        _train(tmp_path, tok, cache, name, *_gpu_flags(), "--gradient_accumulation_steps", "2", "--max_steps", "6",
               "--logging_steps", "3", "--save_strategy", "no", callbacks=[waits])
    assert waits.seen, "nothing recorded: the recorder is not in place"
    assert [w for w in waits.seen if w[1]] == []  # nothing inside any step
    assert {step for step, _, _ in waits.seen} <= {3, 6}  # between steps only where the loss is logged


def test_modernbert_s_own_sparse_prediction_waits_and_the_masked_positions_head_does_not(tmp_path, bpe_dir):
    """Why the masked-positions head is used for ModernBERT too: its sparse_prediction finds the labelled rows by a
    boolean index (a nonzero: the host waits for the GPU), and the library's 2D mask handling asks mask.all()."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if _waits(func, args):
                self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    tok = AutoTokenizer.from_pretrained(bpe_dir)
    model = build_model("modernbert-tiny", None, None, len(tok), special_ids(tok), 32)
    ids = torch.randint(5, len(tok), (2, 32))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    labels = torch.where(torch.arange(32) % 7 == 3, ids, -100)
    positions = (labels.reshape(-1) != -100).nonzero().squeeze(1)
    with Recorder() as ours:
        model(input_ids=ids, attention_mask=mask, labels=labels, head_positions=positions)
    model.sparse_prediction = True
    with Recorder() as theirs:
        type(model).forward(model, input_ids=ids, attention_mask=mask, labels=labels)
    assert ours.seen == []
    assert "aten.index.Tensor" in theirs.seen and "aten._local_scalar_dense.default" in theirs.seen


@pytest.mark.slow  # ~15 s each; roberta's compile test stays in the fast suite (tests/train/test_step.py)
@pytest.mark.parametrize("name", ["modernbert-tiny", "bert-base"])
def test_torch_compile_has_no_graph_break(tmp_path, caches, name):
    """As tests/train/test_step.py checks RoBERTa: dynamo (eager backend on the CPU) traces the masked-positions
    forward in one graph, and compiles it at most once per batch shape."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    tok, cache = caches[CLI_RUNS[name][0]]
    torch._dynamo.reset()
    counters.clear()
    _train(tmp_path, tok, cache, name, "--datasets_type", "MemmapLineByLineTextDataset", "--max_steps", "4",
           "--save_strategy", "no", "--seed", "42", "--torch_compile", "--torch_compile_backend", "eager")
    breaks = dict(counters["graph_break"])
    assert breaks == {}, breaks
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])  # every batch 32 wide: one shape
    torch._dynamo.reset()
