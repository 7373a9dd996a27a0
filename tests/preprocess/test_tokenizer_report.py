"""preprocess/tokenizer_report.py: the measures of a tokenizer on held-out lines, per corpus, as a table and JSON."""

from __future__ import annotations

import json

import pytest

from common.errors import UserError
from common.tokenizer import load_tokenizer
from preprocess.tokenizer_report import (
    TRAINED,
    byte_ids,
    load_for_compare,
    measure,
    report,
    subject,
    table,
    unit_of,
    write,
)
from tests.corpus import EN, TH, make_lines

GEORGIAN = ["გამარჯობა მსოფლიო ენა"] * 20  # a script the fixtures' vocabularies (English and Thai) never saw
ENGLISH = [" ".join(EN[k:k + 8]) for k in range(0, 24, 3)]
THAI = ["".join(TH[k:] + TH[:k]) for k in range(8)]  # Thai as it is written: no spaces between words


def _tok(path):
    return load_tokenizer(str(path)).tokenizer


def _measure(tok, lines):
    return measure(subject(tok, lines[:32]), lines)


def test_tokens_per_word_for_english_and_per_100_characters_for_thai_without_spaces(bpe_dir):
    assert unit_of(ENGLISH) == "word"
    assert unit_of(THAI) == "100 chars"
    assert unit_of(["日本語のテキスト 中文文本"]) == "100 chars"  # mostly a script without spaces, though spaced
    assert unit_of(["x" * 200 + " y"]) == "100 chars"  # one space per 200 characters: no words to count
    tok = _tok(bpe_dir)
    en, th = _measure(tok, ENGLISH), _measure(tok, THAI)
    assert en["unit"] == "word" and en["words"] == 8 * 8
    assert en["tokens_per_unit"] == pytest.approx(en["tokens"] / en["words"])
    assert th["unit"] == "100 chars" and th["characters"] == sum(map(len, THAI))
    assert th["tokens_per_unit"] == pytest.approx(100 * th["tokens"] / th["characters"])
    assert en["lines"] == len(ENGLISH)
    assert th["tokens"] == sum(map(len, tok(THAI, add_special_tokens=False)["input_ids"]))  # no special tokens


def test_the_unknown_rate_is_positive_for_an_unseen_script_and_zero_for_byte_level_bpe(wordpiece_dir, bpe_dir,
                                                                                        spm_dir):
    wordpiece, bpe = _tok(wordpiece_dir), _tok(bpe_dir)
    assert _measure(wordpiece, GEORGIAN)["unk_rate"] > 0.5
    assert _measure(_tok(spm_dir), GEORGIAN)["unk_rate"] > 0  # a slow SentencePiece tokenizer without byte fallback
    assert _measure(wordpiece, ENGLISH)["unk_rate"] == 0
    for lines in (GEORGIAN, ENGLISH, THAI, ["emoji 🤗 and ©"]):
        assert _measure(bpe, lines)["unk_rate"] == 0


def test_byte_fallback_counts_pieces_that_are_not_whole_characters(tmp_path, bpe_dir, wordpiece_dir):
    import sentencepiece as spm

    from common.tokenizer_types import ThaiRobertaTokenizer

    bpe = _tok(bpe_dir)
    assert _measure(bpe, ENGLISH)["byte_fallback_share"] == 0
    assert _measure(bpe, GEORGIAN)["byte_fallback_share"] > 0.5  # unseen: mostly lone bytes of 3-byte characters
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
    m = _measure(sp, GEORGIAN)
    assert m["byte_fallback_share"] > 0.5 and m["unk_rate"] == 0
    assert _measure(sp, ENGLISH)["byte_fallback_share"] == 0


def test_a_comparison_adds_the_other_tokenizers_rows_and_the_json_round_trips(tmp_path, bpe_dir, wordpiece_dir):
    held_out = {"en": ENGLISH, "th": THAI, "mixed": make_lines(50, seed=3)}
    label, other = load_for_compare(str(wordpiece_dir))
    assert label == str(wordpiece_dir)
    sample = [s for lines in held_out.values() for s in lines]
    rep = report(held_out, subject(_tok(bpe_dir), sample), compare=(label, subject(other, sample)))
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
    alone = report({"corpus": ENGLISH}, subject(_tok(bpe_dir), ENGLISH))
    assert len(table(alone).splitlines()) == 2 and alone["tokenizers"] == [TRAINED]

    path = tmp_path / "tokenizer_report.json"
    write(rep, path)
    assert json.loads(path.read_text(encoding="utf-8")) == rep
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n "corpora": {') and text.index('"byte_fallback_share"') < text.index('"unit"')


def test_a_tokenizer_to_compare_with_that_does_not_load_is_one_line(capsys, tmp_path):
    """In the flags the user gave, --compare_with and --compare_type (common/tokenizer.py's ``Flags``): the
    loader's words named the train stage's --tokenizer_name_or_path and --tokenizer_type, which this command
    does not have."""
    from preprocess.train_tokenizer import main as train_tokenizer

    with pytest.raises(UserError) as e:
        load_for_compare(str(tmp_path / "missing"))
    assert str(e.value).startswith(f"--compare_with {tmp_path / 'missing'}: ") and "\n" not in str(e.value)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a tokenizer\n")
    for target in ("missing", "notes"):
        rc = train_tokenizer(["--type", "bpe", "--train_dir", str(tmp_path / "notes"), "--output_dir",
                              str(tmp_path / "out"), "--vocab_size", "300", "--compare_with", str(tmp_path / target)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: --compare_with {tmp_path / target}: "), err
        assert "--tokenizer_name_or_path" not in err[0] and "--tokenizer_type" not in err[0], err
    assert "--compare_type" in err[0]  # the dir holds no tokenizer files for --compare_type auto
    (tmp_path / "afile").write_text("x\n")
    with pytest.raises(UserError, match=r"^--compare_with .*afile: a tokenizer file must be"):
        load_for_compare(str(tmp_path / "afile"))


@pytest.mark.parametrize("family", ["bpe", "wordpiece", "unigram"])
def test_read_without_transformers_a_new_tokenizer_measures_as_autotokenizer_loads_it(tmp_path, family):
    """mlm-train-tokenizer measures a tokenizers-backed family through common/fast_tokenizer.py, not
    transformers: the same figures, on text with unseen script, specials and long lines."""
    from transformers import AutoTokenizer

    from common.fast_tokenizer import read_fast_dir
    from preprocess.tokenizer_families import FAMILIES, FamilyOptions
    from preprocess.tokenizer_report import fast_subject

    FAMILIES[family].train(make_lines(400, seed=7), tmp_path, FamilyOptions(448, 1))
    lines = [*GEORGIAN[:3], *ENGLISH, *THAI, "a <mask> b [MASK] <s>", " lead  spaces", "x" * 70_000, *make_lines(40, seed=8)]
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    ours = fast_subject(read_fast_dir(tmp_path))
    assert measure(ours, lines) == measure(subject(auto, lines[:32]), lines)
    assert ours.encode(lines[:-41]) == auto(lines[:-41], add_special_tokens=False)["input_ids"]
    assert ours.unk == auto.unk_token_id and ours.is_byte.tolist() == byte_ids(auto).tolist()


@pytest.mark.parametrize("kind", ["newmm", "syllable"])
def test_a_word_level_tokenizer_read_without_transformers_measures_as_its_class(tmp_path, kind):
    from collections import Counter

    from common.segmenters import SEGMENTERS
    from common.tokenizer import TOKENIZER_TYPES
    from common.word_level import build_word_vocab, read_word_dir, words_of, write_word_dir
    from preprocess.encoder import bounded_pieces
    from preprocess.tokenizer_report import word_subject
    from preprocess.word_counts import count_and_segment, with_segmented

    segment = SEGMENTERS[kind]
    counts = Counter(w for s in make_lines(300, seed=6) for w in words_of(segment, s, space=True))
    write_word_dir(tmp_path, build_word_vocab(counts, None, 2), TOKENIZER_TYPES[kind].class_name)
    lines = [*THAI, *ENGLISH, *GEORGIAN[:2], "a <mask> b<s>", *make_lines(40, seed=10)]
    ours = word_subject(read_word_dir(tmp_path, TOKENIZER_TYPES[kind].class_name), segment)
    theirs = subject(load_tokenizer(str(tmp_path), kind).tokenizer, lines[:32])
    assert measure(ours, lines) == measure(theirs, lines)
    assert measure(ours, GEORGIAN)["unk_rate"] > 0.5 and ours.unk == 3
    # As mlm-train-tokenizer measures: each line (a long one in the pieces the report encodes) segmented by
    # the count's workers, this process segmenting only the parts around a special token's text
    lines.append("ภาษา ไทย " * 8_000)  # longer than ENCODE_CHARS
    assert len(bounded_pieces(lines[-1])) == 2
    _, segmented = count_and_segment(kind, [], [p for s in lines for p in bounded_pieces(s)], 2)
    here: list[str] = []
    memo = with_segmented(lambda text: here.append(text) or segment(text), segmented)
    assert measure(word_subject(read_word_dir(tmp_path, TOKENIZER_TYPES[kind].class_name), memo), lines) == \
        measure(ours, lines)
    assert here == ["a ", " b"]
