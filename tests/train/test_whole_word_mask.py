"""Whole-word masking: word starts from each tokenizer family's own marks, every word masked whole or not at
all, the count per block in words, masks that depend on (seed, stream, key) only, a head that holds them all,
the refusal of a tokenizer without word marks, and the CLI: train, resume exactly, fill a mask; 1 vs 2 processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, pipeline

from common.tokenizer import load_tokenizer
from preprocess.__main__ import main as preprocess_main
from tests.corpus import make_lines, write_shards
from tests.train import record
from tests.train.test_train import _rows, _texts, seed_command
from train.__main__ import main as train_main
from train.collator import LADDER, TRAIN_STREAM, MlmCollator, RateSchedule, head_rows, word_starts
from train.words import word_marks

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tokenizers"


def _tokenizer(request, family: str):
    """(tokenizer, lines of its language) for a family: the session fixtures (trained here) or the committed ones."""
    if family in ("bpe", "wordpiece", "spm_hf"):
        path = request.getfixturevalue({"bpe": "bpe_dir", "wordpiece": "wordpiece_dir", "spm_hf": "spm_dir"}[family])
        glued = [re.sub(r"(\S+) (\S+) ", r"\1\2 ", line) for line in make_lines(150, seed=3)]  # words of pieces
        return load_tokenizer(str(path)).tokenizer, glued
    from tests.common.test_tokenizer_types import thai_lines

    kind, settings = {"spm": ("spm", {"add_space_token": True}), "spm_fast": ("auto", {}),
                      "newmm": ("newmm", {})}[family]
    path = FIXTURES / ("newmm" if family == "newmm" else "spm")
    return load_tokenizer(str(path), kind, settings).tokenizer, thai_lines(120, seed=5)


def _reference_words(tok, line: str) -> tuple[list[int], list[int]]:
    """A line's ids and each id's word, from the text alone (never from the pieces' marks): a run of non-spaces
    is a word, and so is each space where spaces are the <_> token (for a word-level type, each of its
    segmenter's words). The ids of the line cut after a word (or
    such a space) are a prefix of the line's ids, so the pieces between two cuts are one word's."""
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    if hasattr(tok, "segment"):  # a word-level type: its words are its segmenter's (newmm's dictionary words)
        ids = encode(line)
        assert len(tok._words(line)) == len(ids)
        return ids, list(range(len(ids)))
    pattern = r"\S+| " if "<_>" in tok.get_vocab() else r"\S+"
    ids, words = encode(line), []
    for w, m in enumerate(re.finditer(pattern, line)):
        prefix = encode(line[: m.end()])
        assert prefix == ids[: len(prefix)], (line, m.end())
        words += [w] * (len(prefix) - len(words))
    assert len(words) == len(ids)
    return ids, words


def _ends(tok) -> tuple[int, int]:
    """bos and eos, or WordPiece's [CLS] and [SEP] in their place (as common/tokenizer.py takes them)."""
    return (tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id,
            tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id)


def _block(tok, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """bos, each line's ids followed by eos (the separator), as a block: (ids, each id's word number or -1)."""
    bos, eos = _ends(tok)
    ids, words, base = [bos], [-1], 0
    for line in lines:
        line_ids, line_words = _reference_words(tok, line)
        ids += [*line_ids, eos]
        words += [base + w for w in line_words] + [-1]
        base += max(line_words, default=-1) + 1
    return np.array(ids), np.array(words)


@pytest.mark.parametrize("family", ["bpe", "wordpiece", "spm_hf", "spm", "spm_fast", "newmm"])
def test_each_familys_marks_give_the_words_of_the_text(request, family):
    """The word starts read from the vocabulary table are exactly where the text's words start."""
    tok, lines = _tokenizer(request, family)
    marks = word_marks(tok)
    for k in range(0, len(lines), 3):
        ids, words = _block(tok, lines[k : k + 3])
        maskable = words >= 0
        starts = word_starts(ids[None, :], maskable[None, :], marks)[0]
        want = maskable & (np.r_[-1, words[:-1]] != words)
        assert np.array_equal(starts, want), (family, lines[k : k + 3])
    if family == "newmm":
        assert marks.starts.all()


def _masked_words(labels: np.ndarray, words: np.ndarray) -> tuple[int, int]:
    """(words masked whole, words masked in part)."""
    whole = part = 0
    for w in np.unique(words[words >= 0]):
        chosen = labels[words == w] != -100
        whole += chosen.all()
        part += chosen.any() and not chosen.all()
    return int(whole), int(part)


@pytest.mark.parametrize("family", ["bpe", "wordpiece", "spm"])
@pytest.mark.parametrize("p", [0.15, 0.4])
def test_every_word_is_masked_whole_or_not_and_each_block_gets_p_of_its_words(request, family, p):
    tok, lines = _tokenizer(request, family)
    coll = MlmCollator(tok, list(_ends(tok)), tok.pad_token_id, p, max_width=512, seed=3, whole_word_mask=True)
    blocks = [_block(tok, lines[k : k + 4]) for k in range(0, 100, 4)]
    masked = total = pieces = as_mask = 0
    for key in range(40):
        ids, words = blocks[key % len(blocks)]
        b = coll([(TRAIN_STREAM, key, torch.from_numpy(ids))])
        labels, out = b["labels"][0, : len(ids)].numpy(), b["input_ids"][0, : len(ids)].numpy()
        whole, part = _masked_words(labels, words)
        n = len(np.unique(words[words >= 0]))
        assert part == 0 and abs(whole - p * n) < 1  # whole words only, p of the block's words, rounded at random
        masked, total = masked + whole, total + n
        chosen = labels != -100
        assert np.array_equal(labels[chosen], ids[chosen]) and np.array_equal(out[~chosen], ids[~chosen])
        pieces, as_mask = pieces + chosen.sum(), as_mask + (out[chosen] == tok.mask_token_id).sum()
    assert masked / total == pytest.approx(p, abs=0.02)
    assert as_mask / pieces == pytest.approx(0.8, abs=0.06)  # 80/10/10 drawn per piece


def test_evaluation_masks_pieces_as_without_whole_words(request):
    """Evaluation is the fixed yardstick: the same masks with or without --whole_word_mask."""
    from train.collator import EVAL_STREAM

    tok, lines = _tokenizer(request, "bpe")
    blocks = [torch.from_numpy(_block(tok, lines[k : k + 4])[0]) for k in range(0, 40, 4)]
    plain = MlmCollator(tok, list(_ends(tok)), tok.pad_token_id, 0.15, max_width=512, seed=2)
    words = MlmCollator(tok, list(_ends(tok)), tok.pad_token_id, 0.15, max_width=512, seed=2, whole_word_mask=True)
    evaluation = [(EVAL_STREAM, k, x) for k, x in enumerate(blocks)]
    assert all(torch.equal(a, b) for a, b in zip(plain(evaluation).values(), words(evaluation).values()))
    training = [(TRAIN_STREAM, k, x) for k, x in enumerate(blocks)]
    assert not torch.equal(plain(training)["labels"], words(training)["labels"])


def test_where_every_token_is_a_word_the_masks_are_plain_maskings_bit_for_bit(request):
    tok, lines = _tokenizer(request, "newmm")
    blocks = [torch.from_numpy(_block(tok, lines[k : k + 3])[0]) for k in range(0, 60, 3)]
    kw = dict(max_width=512, seed=5, head_positions=True, schedule=RateSchedule(0.3, 0.15, 10, 4))
    plain = MlmCollator(tok, [tok.bos_token_id, tok.eos_token_id], tok.pad_token_id, **kw)
    words = MlmCollator(tok, [tok.bos_token_id, tok.eos_token_id], tok.pad_token_id, **kw, whole_word_mask=True)
    batch = [(TRAIN_STREAM, 7 * k, x) for k, x in enumerate(blocks)]
    a, b = plain(batch), words(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_head_holds_every_piece_of_long_words_on_a_ladder_of_sizes(wordpiece_dir):
    """Words of 30 pieces among one-piece words: a block's masked pieces can pass p x width; the head then takes
    a rung of p x 1.25^j, never fewer rows than labels."""
    tok = AutoTokenizer.from_pretrained(wordpiece_dir)
    vocab = tok.get_vocab()
    long_word = [vocab["t"]] + [vocab[p] for p in vocab if p.startswith("##")][:29]
    short = [i for p, i in vocab.items() if not p.startswith(("##", "["))][:40]
    coll = MlmCollator(tok, [tok.cls_token_id, tok.sep_token_id], tok.pad_token_id, 0.15, max_width=128, seed=1,
                       head_positions=True, whole_word_mask=True)
    rungs = {head_rows(4, 128, min(0.15 * LADDER**j, 1.0)) for j in range(12)}
    overflowed = 0
    for key in range(200):
        body = long_word + short[:20] + long_word + short[20:]
        blocks = [torch.tensor([tok.cls_token_id, *body[: 100 - 5 * r], tok.sep_token_id]) for r in range(4)]
        b = coll([(TRAIN_STREAM, 4 * key + r, x) for r, x in enumerate(blocks)])
        labelled = set((b["labels"].view(-1) != -100).nonzero().squeeze(1).tolist())
        head = b["head_positions"].tolist()
        assert labelled <= set(head) and len(head) in rungs
        overflowed += len(head) > head_rows(4, 128, 0.15)
    assert overflowed > 0  # the case happened


def test_a_tokenizer_without_word_marks_is_refused_by_name_in_one_line(capsys, tmp_path):
    """A BPE split on whitespace, without a prefix, a suffix or a byte-level/SentencePiece pre-tokenizer: its
    pieces do not say where a word starts."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bare = Tokenizer(models.BPE(unk_token="<unk>"))
    bare.pre_tokenizer = pre_tokenizers.Whitespace()
    bare.train_from_iterator(make_lines(500), trainers.BpeTrainer(vocab_size=200, special_tokens=[
        "<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tok_dir = tmp_path / "bare_bpe"
    PreTrainedTokenizerFast(tokenizer_object=bare, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(tok_dir)
    write_shards(tmp_path / "text", n_shards=1, lines_per_shard=40)
    flags = ["--tokenizer_name_or_path", str(tok_dir), "--datasets_cache_dir", str(tmp_path / "cache"),
             "--max_seq_length", "32"]
    assert preprocess_main([*flags, "--train_dir", str(tmp_path / "text")]) == 0
    capsys.readouterr()
    rc = train_main([*flags, "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / "out"), "--max_steps",
                     "1", "--report_to", "none", "--whole_word_mask"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"error: --tokenizer_name_or_path {tok_dir}: --whole_word_mask:")
    assert "a BPE model" in err[-1] and "no mark of where a word starts" in err[-1]
    assert not (tmp_path / "out" / "checkpoint-1").exists()


def _train_args(tok: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", "32",
            "--architecture", "roberta-tiny", "--output_dir", str(out), "--max_steps", "8", "--save_steps", "4",
            "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16", "--eval_strategy", "steps",
            "--eval_steps", "4", "--logging_steps", "1", "--learning_rate", "5e-4", "--seed", "3", "--report_to",
            "none", "--dataloader_num_workers", "0", "--whole_word_mask", "--mlm_probability_schedule", "0.3:0.15",
            *extra]


def test_mlm_train_with_whole_words_and_a_schedule_trains_resumes_exactly_and_fills_a_mask(tmp_path, bpe_dir, bpe_cache,
                                                                                          monkeypatch):
    monkeypatch.setattr(record, "RECORDED", [])
    record.install(monkeypatch.setattr)
    full = tmp_path / "full"
    assert train_main(_train_args(bpe_dir, bpe_cache, full)) == 0
    trained = [b for training, b in record.RECORDED if training]
    assert len(trained) == 8
    share = [float((b["labels"] != -100).sum() / (b["attention_mask"].sum() - 2 * len(b["labels"]))) for b in trained]
    assert np.mean(share[:2]) > np.mean(share[-2:]) + 0.05  # 0.3 at the first step, 0.15 at the last
    recorded = json.loads((full / "provenance.json").read_text())["data"][-1]["data"]["order"]["masking"]
    assert recorded == {"mlm_probability": 0.15, "schedule": {"start": 0.3, "end": 0.15, "steps": 8},
                        "whole_word_mask": True}
    history = json.loads((full / "trainer_state.json").read_text())["log_history"]
    # killed after checkpoint-4 and resumed: the same losses, evaluations and final weights, bit for bit
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(full / "checkpoint-4", cut / "checkpoint-4")
    assert train_main(_train_args(bpe_dir, bpe_cache, cut, "--resume_from_checkpoint", str(cut / "checkpoint-4"))) == 0
    resumed = json.loads((cut / "trainer_state.json").read_text())["log_history"]
    after = lambda h, key: {e["step"]: e[key] for e in h if key in e and e["step"] > 4}  # noqa: E731
    assert after(resumed, "loss") == after(history, "loss") and len(after(history, "loss")) == 4
    assert after(resumed, "eval_loss") == after(history, "eval_loss")
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    fill = pipeline("fill-mask", model=str(full), tokenizer=str(full), device="cpu")
    assert len(fill("the <mask> of")) == 5


@pytest.mark.slow  # 45 s here: two torchrun runs
def test_whole_word_masks_and_scheduled_rates_are_the_same_on_1_and_2_processes(tmp_path, bpe_dir):
    """2 processes, and 1 with twice the accumulation (the same global batch): every optimizer step trains on
    the same samples with the same whole-word masks at the same rate."""
    train, ev = _texts(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "tests" / "train" / "record.py")

    def command(out: Path, grad_acc: int) -> list[str]:
        args = seed_command(bpe_dir, train, ev, tmp_path / "cache", out, max_steps=4, batch=2, grad_acc=grad_acc,
                            save_steps=100, eval_steps=100)
        args.remove("--add_space_token")
        return [*args, "--whole_word_mask", "--mlm_probability_schedule", "0.4:0.1"]

    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", script,
                        str(tmp_path / "a"), *command(tmp_path / "two", 1)], capture_output=True, text=True, env=env,
                       timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    r = subprocess.run([sys.executable, script, str(tmp_path / "b"), *command(tmp_path / "one", 2)],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    ranks = [[b for training, b in torch.load(f"{tmp_path / 'a'}.rank{k}.pt") if training] for k in (0, 1)]
    one = [b for training, b in torch.load(f"{tmp_path / 'b'}.rank0.pt") if training]
    assert len(one) == 8 and all(len(r) == 4 for r in ranks)
    for step in range(4):
        assert _rows(one[2 * step : 2 * step + 2]) == _rows([ranks[0][step], ranks[1][step]]), f"step {step + 1}"
