"""preprocess/tokenizer_report.py: the measures of a tokenizer on held-out lines, per corpus, as a table and JSON."""

from __future__ import annotations

import json

import pytest

from common.errors import UserError
from common.tokenizer import load_tokenizer
from preprocess.tokenizer_report import TRAINED, byte_ids, load_for_compare, measure, report, table, unit_of, write
from tests.corpus import EN, TH, make_lines

GEORGIAN = ["გამარჯობა მსოფლიო ენა"] * 20  # a script the fixtures' vocabularies (English and Thai) never saw
ENGLISH = [" ".join(EN[k:k + 8]) for k in range(0, 24, 3)]
THAI = ["".join(TH[k:] + TH[:k]) for k in range(8)]  # Thai as it is written: no spaces between words


def _tok(path):
    return load_tokenizer(str(path)).tokenizer


def test_tokens_per_word_for_english_and_per_100_characters_for_thai_without_spaces(bpe_dir):
    assert unit_of(ENGLISH) == "word"
    assert unit_of(THAI) == "100 chars"
    assert unit_of(["日本語のテキスト 中文文本"]) == "100 chars"  # mostly a script without spaces, though spaced
    assert unit_of(["x" * 200 + " y"]) == "100 chars"  # one space per 200 characters: no words to count
    tok = _tok(bpe_dir)
    en, th = measure(tok, ENGLISH), measure(tok, THAI)
    assert en["unit"] == "word" and en["words"] == 8 * 8
    assert en["tokens_per_unit"] == pytest.approx(en["tokens"] / en["words"])
    assert th["unit"] == "100 chars" and th["characters"] == sum(map(len, THAI))
    assert th["tokens_per_unit"] == pytest.approx(100 * th["tokens"] / th["characters"])
    assert en["lines"] == len(ENGLISH)
    assert th["tokens"] == sum(map(len, tok(THAI, add_special_tokens=False)["input_ids"]))  # no special tokens


def test_the_unknown_rate_is_positive_for_an_unseen_script_and_zero_for_byte_level_bpe(wordpiece_dir, bpe_dir,
                                                                                        spm_dir):
    wordpiece, bpe = _tok(wordpiece_dir), _tok(bpe_dir)
    assert measure(wordpiece, GEORGIAN)["unk_rate"] > 0.5
    assert measure(_tok(spm_dir), GEORGIAN)["unk_rate"] > 0  # a slow SentencePiece tokenizer without byte fallback
    assert measure(wordpiece, ENGLISH)["unk_rate"] == 0
    for lines in (GEORGIAN, ENGLISH, THAI, ["emoji 🤗 and ©"]):
        assert measure(bpe, lines)["unk_rate"] == 0


def test_byte_fallback_counts_pieces_that_are_not_whole_characters(tmp_path, bpe_dir, wordpiece_dir):
    import sentencepiece as spm

    from common.tokenizer_types import ThaiRobertaTokenizer

    bpe = _tok(bpe_dir)
    assert measure(bpe, ENGLISH)["byte_fallback_share"] == 0
    assert measure(bpe, GEORGIAN)["byte_fallback_share"] > 0.5  # unseen: mostly lone bytes of 3-byte characters
    flags = byte_ids(bpe)
    vocab = bpe.get_vocab()
    assert flags[vocab["à"]] and not flags[vocab["a"]]  # à: 0xE0, the first byte of every Thai character
    assert not byte_ids(_tok(wordpiece_dir)).any()  # no byte pieces in WordPiece

    # A SentencePiece model with byte fallback: Georgian comes out as <0xNN> pieces.
    text = tmp_path / "train.txt"
    text.write_text("\n".join(make_lines(300, seed=5)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=360,
                                   byte_fallback=True, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
                                   user_defined_symbols=["<mask>"], minloglevel=2)
    sp = ThaiRobertaTokenizer(vocab_file=str(tmp_path / "sp.model"))
    assert byte_ids(sp)[sp.get_vocab()["<0xE1>"]]
    m = measure(sp, GEORGIAN)
    assert m["byte_fallback_share"] > 0.5 and m["unk_rate"] == 0
    assert measure(sp, ENGLISH)["byte_fallback_share"] == 0


def test_a_comparison_adds_the_other_tokenizers_rows_and_the_json_round_trips(tmp_path, bpe_dir, wordpiece_dir):
    held_out = {"en": ENGLISH, "th": THAI, "mixed": make_lines(50, seed=3)}
    compare = load_for_compare(str(wordpiece_dir))
    assert compare[0] == str(wordpiece_dir)
    rep = report(held_out, _tok(bpe_dir), compare=compare)
    assert rep["tokenizers"] == [TRAINED, str(wordpiece_dir)]
    assert list(rep["corpora"]) == ["en", "th", "mixed"]
    for name, lines in held_out.items():
        for label in rep["tokenizers"]:
            assert rep["corpora"][name][label]["lines"] == len(lines)
    assert rep["corpora"]["th"][str(wordpiece_dir)]["unit"] == rep["corpora"]["th"][TRAINED]["unit"] == "100 chars"

    rows = table(rep).splitlines()
    assert len(rows) == 1 + 3 * 2  # a header, then one row per corpus x tokenizer
    assert len({len(r) for r in rows[1:]}) <= 2 and rows[1].startswith("en ") and TRAINED in rows[1]
    assert rows[2].split()[1] == str(wordpiece_dir) and "100 chars" in rows[3]
    alone = report({"corpus": ENGLISH}, _tok(bpe_dir))
    assert len(table(alone).splitlines()) == 2 and alone["tokenizers"] == [TRAINED]

    path = tmp_path / "tokenizer_report.json"
    write(rep, path)
    assert json.loads(path.read_text(encoding="utf-8")) == rep
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n "corpora": {') and text.index('"byte_fallback_share"') < text.index('"unit"')


def test_a_tokenizer_to_compare_with_that_does_not_load_is_one_line(tmp_path):
    with pytest.raises(UserError) as e:
        load_for_compare(str(tmp_path / "missing"))
    assert str(e.value).startswith(f"--compare_with {tmp_path / 'missing'}: ") and "\n" not in str(e.value)
