"""The fast backends must give exactly the ids of tokenizer(line, add_special_tokens=False)."""

import pytest
from transformers import AutoTokenizer

from preprocess.cleaning import clean_lines, decode_bytes
from preprocess.encoder import candidate_encoders, check_encoder, choose_encoder
from tests.corpus import make_lines

VARIED = [
    *make_lines(300, seed=5),
    "Hello WORLD, it's 3.14 o'clock!", "  spaces   inside  ", "tab\tseparated\tvalues",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ", "emoji 🤗 and 中文 and 한국어", "café naïve Ångström",
    "<s> </s> <pad> <mask> <unk> [CLS] [SEP] [MASK] [PAD]", "a<mask>b the<mask> [MASK]x",
    "x" * 500, "\u00a0nbsp\u3000ideographic space", "\ufffd", "12345678901234567890",
]


@pytest.mark.parametrize("fixture,expected", [("wordpiece_dir", "tokenizers"), ("bpe_dir", "tokenizers"),
                                              ("spm_dir", "sentencepiece")])
def test_fastest_backend_matches_transformers(request, fixture, expected):
    tok = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    name, rejected = choose_encoder(tok)
    assert name == expected, rejected
    encode = candidate_encoders(tok)[name]
    assert check_encoder(tok, encode, VARIED) == []
    # and one line at a time, exactly as the reference defines it
    for line in VARIED[-14:]:
        assert encode([line])[0] == tok(line, add_special_tokens=False)["input_ids"]


def test_a_backend_that_differs_is_rejected(wordpiece_dir, monkeypatch):
    tok = AutoTokenizer.from_pretrained(wordpiece_dir)
    import preprocess.encoder as enc

    real = enc.candidate_encoders

    def broken(t):
        cands = real(t)
        good = cands["tokenizers"]
        cands["tokenizers"] = lambda lines: [ids[:-1] for ids in good(lines)]  # drops a token
        return cands

    monkeypatch.setattr(enc, "candidate_encoders", broken)
    name, rejected = enc.choose_encoder(tok)
    assert name == "transformers" and "tokenizers" in rejected[0]


def test_clean_lines_strips_and_drops_empty_like_the_original():
    text = "  a b  \r\n\n   \nc\rd\t\n\u3000\n"
    assert clean_lines(text) == ["a b", "c", "d"]
    assert clean_lines("a b c", space_token="<_>") == ["a<_>b<_>c"]


def test_invalid_utf8_is_replaced_and_counted():
    raw = b"ok " + b"\xff\xfe" + " real \ufffd".encode() + b"\xc3"
    text, bad = decode_bytes(raw)
    assert bad == 3 and text.startswith("ok ") and text.count("\ufffd") == 4
    assert decode_bytes("fine \ufffd".encode()) == ("fine \ufffd", 0)
