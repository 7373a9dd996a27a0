"""common/word_level.py: a word-level dir written and read without transformers, as the classes write and read it."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from common.fast_tokenizer import TokenizerDirError
from common.segmenters import SEGMENTERS
from common.tokenizer import TOKENIZER_TYPES, load_tokenizer
from common.word_level import (
    CONFIG_JSON,
    VOCAB_JSON,
    build_word_vocab,
    encoder,
    read_word_dir,
    words_of,
    write_word_dir,
)
from tests.corpus import make_lines

# Specials inside words, at the ends, doubled, beside spaces; the space token written out; no text at all.
TRICKY = ["a<mask>b", "<s>ภาษาไทย</s>", " <mask>  x ", "<<mask>>", "<pad><unk>", "literal <_> token", "", "   ",
          "ภาษาไทยเป็นภาษาที่สวยงาม สวัสดี", "the cat sat", "</s", "<mas k>"]


def _vocab(kind: str) -> dict[str, int]:
    segment = SEGMENTERS[kind]
    counts = Counter(w for s in make_lines(300, seed=4) for w in words_of(segment, s, space=False))
    return build_word_vocab(counts, 400, 1)


@pytest.mark.parametrize("kind", ["newmm", "syllable"])
def test_the_files_are_those_the_class_saves_and_it_encodes_as_ours(tmp_path, kind):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    vocab = _vocab(kind)
    cls = TOKENIZER_TYPES[kind].tokenizer_class()
    write_word_dir(ours, vocab, cls.__name__)
    (tmp_path / "v.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    cls(vocab_file=str(tmp_path / "v.json")).save_pretrained(theirs)
    assert (ours / VOCAB_JSON).read_bytes() == (theirs / VOCAB_JSON).read_bytes()
    assert json.loads((ours / CONFIG_JSON).read_text()) == json.loads((theirs / CONFIG_JSON).read_text())
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())

    tok = load_tokenizer(str(ours), kind).tokenizer  # what mlm-preprocess and mlm-train load
    assert type(tok) is cls and read_word_dir(ours, cls.__name__) == vocab
    lines = [*TRICKY, *make_lines(30, seed=9)]
    assert encoder(vocab, SEGMENTERS[kind])(lines) == tok(lines, add_special_tokens=False)["input_ids"]
    assert any(tok.mask_token_id in ids for ids in encoder(vocab, SEGMENTERS[kind])(TRICKY))  # specials split out


@pytest.mark.parametrize("damage, says", [
    (lambda d: (d / VOCAB_JSON).unlink(), "vocab.json: FileNotFoundError"),
    (lambda d: (d / CONFIG_JSON).write_text("{"), "tokenizer_config.json: JSONDecodeError"),
    (lambda d: (d / CONFIG_JSON).write_text(json.dumps({"tokenizer_class": "BertTokenizer"})),
     "tokenizer_class 'BertTokenizer', not ThaiWordsNewmmTokenizer"),
    (lambda d: (d / VOCAB_JSON).write_text(json.dumps({"<s>": 0, "x": 1})), "no <pad>, </s>, <unk>, <mask> among"),
])
def test_a_damaged_dir_is_one_line_naming_what_is_wrong(tmp_path, damage, says):
    write_word_dir(tmp_path, _vocab("newmm"), "ThaiWordsNewmmTokenizer")
    damage(tmp_path)
    with pytest.raises(TokenizerDirError) as e:
        read_word_dir(tmp_path, "ThaiWordsNewmmTokenizer")
    assert says in str(e.value) and str(tmp_path) in str(e.value) and "\n" not in str(e.value)
