"""common/fast_tokenizer.py: a tokenizers-backed dir written and read without transformers, as transformers writes and reads it."""

from __future__ import annotations

import json

import pytest

from common.fast_tokenizer import (
    CONFIG_JSON,
    FAST_CLASS,
    TOKENIZER_JSON,
    TokenizerDirError,
    read_fast_dir,
    write_fast_dir,
)
from tests.corpus import make_lines

ROLES = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>",
         "cls_token": "<s>", "sep_token": "</s>"}


def _bpe():
    """A small byte-level BPE with RoBERTa's <mask> (lstrip), as mlm-train-tokenizer --type bpe makes one."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)
    tok.train_from_iterator(make_lines(200, seed=1), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", mask], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def test_the_files_are_those_save_pretrained_writes_and_autotokenizer_loads_them_alike(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    tok = _bpe()
    write_fast_dir(tok, ours, ROLES)
    PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **ROLES).save_pretrained(theirs)
    assert (ours / TOKENIZER_JSON).read_bytes() == (theirs / TOKENIZER_JSON).read_bytes()
    written = {k: v for k, v in json.loads((theirs / CONFIG_JSON).read_text()).items() if k != "backend"}
    mine = json.loads((ours / CONFIG_JSON).read_text())
    assert mine.pop("tokenizer_class") == FAST_CLASS  # v4's name: v5 maps it to the same class it writes
    written.pop("tokenizer_class")
    assert mine == written
    a, b = AutoTokenizer.from_pretrained(str(ours)), AutoTokenizer.from_pretrained(str(theirs))
    assert isinstance(a, PreTrainedTokenizerFast) and type(a) is type(b)
    assert a.special_tokens_map == b.special_tokens_map and a.all_special_ids == b.all_special_ids
    text = ["the cat <mask> the ball", "ภาษาไทย  spaced <mask>", *make_lines(20, seed=2)]
    assert a(text)["input_ids"] == b(text)["input_ids"]
    assert a("x <mask>")["input_ids"][-2] == a.mask_token_id  # <mask> takes the space before it, as RoBERTa's
    assert a.decode(a("a  b . c")["input_ids"], skip_special_tokens=True) == "a  b . c"  # no clean-up of spaces


def test_read_back_gives_each_roles_id_and_the_special_ids(tmp_path):
    tok = _bpe()
    write_fast_dir(tok, tmp_path, ROLES)
    fast = read_fast_dir(tmp_path)
    assert fast.role_id("mask_token") == tok.token_to_id("<mask>") and fast.role_id("pad_token") == 1
    assert fast.special_ids == {0, 1, 2, 3, tok.token_to_id("<mask>")}
    assert fast.vocab_size == tok.get_vocab_size() and fast.role_id("nothing") is None


@pytest.mark.parametrize("damage, says", [
    (lambda d: (d / TOKENIZER_JSON).unlink(), "No such file"),
    (lambda d: (d / TOKENIZER_JSON).write_text("{not json"), "tokenizer.json: Exception: key must be a string"),
    (lambda d: (d / CONFIG_JSON).write_text(json.dumps({"tokenizer_class": "BertTokenizer"})), "not PreTrainedTokenizerFast"),
    (lambda d: (d / CONFIG_JSON).write_text(json.dumps({"tokenizer_class": FAST_CLASS, "mask_token": "[MASK]"})),
     "mask_token '[MASK]' is not in tokenizer.json's vocabulary"),
])
def test_a_damaged_dir_is_one_line_naming_what_is_wrong(tmp_path, damage, says):
    write_fast_dir(_bpe(), tmp_path, ROLES)
    damage(tmp_path)
    with pytest.raises(TokenizerDirError) as e:
        read_fast_dir(tmp_path)
    assert says in str(e.value) and str(tmp_path) in str(e.value) and "\n" not in str(e.value)
