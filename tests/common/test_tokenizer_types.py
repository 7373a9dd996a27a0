"""The users' tokenizer types: registry, ids, round trips, pickling, saving, preprocessing through the CLI."""

from __future__ import annotations

import json
import pickle
import random
import unicodedata
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from common.tokenizer import TokenizerError, load_tokenizer, resolve_type
from preprocess.encoder import candidate_encoders, check_encoder, choose_encoder
from preprocess.train_tokenizer import main as train_tokenizer
from tests.corpus import make_lines
from tests.preprocess.helpers import base_args, manifest, run_cli


def thai_lines(n: int, seed: int = 0) -> list[str]:
    """Thai (and some English) lines from PyThaiNLP's bundled word list: real Thai spelling, no download."""
    from pythainlp.corpus import thai_words

    words = sorted(thai_words())
    rng = random.Random(seed)
    pool = rng.sample(words, 400)
    return [" ".join("".join(rng.choice(pool) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 12)))
            for _ in range(n)] + make_lines(n // 4, seed=seed)


VARIED = ["สวัสดีครับ ผมชื่อสมชาย", "ภาษาไทย  กับ English mixed 123", "ราคา 1,000 บาท!", "a",
          "emoji 🤗 ใน ข้อความ", "<mask> อยู่ ตรงนี้", "<s> ไม่ใช่ พิเศษ </s>", "tab\tแท็บ", "ๆ ฯลฯ ๑๒๓"]


@pytest.fixture(scope="module")
def thai_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("thai_txt")
    lines = thai_lines(2400)
    for k in range(3):
        (d / f"part{k}.txt").write_text("\n".join(lines[k::3]) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """The committed tiny tokenizers (tests/fixtures/make_tokenizers.py), copied so no test can alter them."""
    import shutil

    from tests.fixtures.make_tokenizers import OUT

    out = {}
    root = tmp_path_factory.mktemp("tokenizers")
    for kind in ("spm", "newmm", "syllable"):
        out[kind] = Path(shutil.copytree(OUT / kind, root / kind))
    vocab = {w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<_>", "กิน", "ข้าว", "eat"])}
    (root / "sefr").mkdir()
    (root / "sefr" / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    out["fake_sefr_cut"] = root / "sefr"
    return out


def test_registry_accepts_short_and_class_names_and_lists_the_valid_ones():
    assert resolve_type("ThaiRobertaTokenizer") == "spm" and resolve_type("ThaiWordsNewmmTokenizer") == "newmm"
    assert resolve_type("ThaiWordsSyllableTokenizer") == "syllable"
    assert resolve_type("FakeSefrCutTokenizer") == "fake_sefr_cut"
    with pytest.raises(TokenizerError, match="valid types: .*ThaiRobertaTokenizer.*newmm.*module.path:ClassName"):
        resolve_type("Bogus")


def test_spm_ids_follow_the_users_docs(trained):
    tok = load_tokenizer(str(trained["spm"]), "ThaiRobertaTokenizer", {"add_space_token": True}).tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<_>"]] == [0, 1, 2, 3, 4, 5]
    ids = tok("สวัสดี ครับ")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and 5 in ids  # <s> X </s>, the space is <_>
    assert tok.decode(ids, skip_special_tokens=True) == "สวัสดี ครับ"
    checked = 0
    for line in [*thai_lines(200), *VARIED]:
        ids = tok(line)["input_ids"]
        # unseen characters and special tokens cannot come back; SentencePiece turns a tab into its word mark
        if tok.unk_token_id not in ids and "<" not in line and "\t" not in line:
            # SentencePiece normalises with NFKC (e.g. Thai sara am U+0E33 -> U+0E4D U+0E32)
            assert tok.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFKC", line)
            checked += 1
    assert checked > 150


def test_spm_native_encoder_matches_the_class_and_is_chosen(trained):
    tok = load_tokenizer(str(trained["spm"]), "spm", {"add_space_token": True}).tokenizer
    name, rejected = choose_encoder(tok, thai_lines(50, seed=3))
    assert name == "native", rejected
    assert check_encoder(tok, candidate_encoders(tok)["native"], [*thai_lines(300, seed=4), *VARIED]) == []


@pytest.mark.parametrize("kind", ["newmm", "syllable", "fake_sefr_cut"])
def test_word_level_round_trip_and_native_encoder(trained, kind):
    tok = load_tokenizer(str(trained[kind]), kind).tokenizer
    text = "กิน<|>ข้าว<|> <|>eat" if kind == "fake_sefr_cut" else "สวัสดี ภาษาไทย"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id == 0 and ids[-1] == tok.eos_token_id == 2
    assert tok.unk_token_id == 3 and tok.pad_token_id == 1
    assert tok("zzzqqq", add_special_tokens=False)["input_ids"] == [3]  # unknown word -> <unk>
    # every line without an unknown word decodes back to its text (the <|> marks are not text)
    texts = [text] if kind == "fake_sefr_cut" else thai_lines(200)  # the lines the vocab was counted on
    known = [t for t in texts if tok.unk_token_id not in tok(t, add_special_tokens=False)["input_ids"]]
    assert len(known) >= len(texts) // 2
    for t in known:
        assert tok.decode(tok(t)["input_ids"], skip_special_tokens=True) == t.replace("<|>", "")
    lines = thai_lines(100, seed=5) if kind != "fake_sefr_cut" else ["กิน<|>ข้าว", "eat<|> <|>กิน", "x<|>y"]
    name, rejected = choose_encoder(tok, lines)
    assert name == "native", rejected


@pytest.mark.parametrize("kind", ["spm", "newmm", "syllable", "fake_sefr_cut"])
def test_pickles_and_saves_round_trip(trained, tmp_path, kind):
    settings = {"add_space_token": kind == "spm"}
    tok = load_tokenizer(str(trained[kind]), kind, settings).tokenizer
    sample = thai_lines(20, seed=6)
    before = tok(sample, add_special_tokens=False)["input_ids"]
    assert pickle.loads(pickle.dumps(tok))(sample, add_special_tokens=False)["input_ids"] == before
    tok.save_pretrained(tmp_path / "saved")
    again = load_tokenizer(str(tmp_path / "saved"), kind, settings).tokenizer
    assert type(again) is type(tok) and again(sample, add_special_tokens=False)["input_ids"] == before


def test_spm_dir_loads_with_autotokenizer_without_our_package(trained):
    ours = load_tokenizer(str(trained["spm"]), "spm", {"add_space_token": True}).tokenizer
    auto = AutoTokenizer.from_pretrained(trained["spm"])
    assert auto.is_fast
    for line in thai_lines(200, seed=7):
        assert auto(line)["input_ids"] == ours(line)["input_ids"], line


def test_identity_ignores_what_a_model_dir_holds_besides_the_tokenizer(trained, tmp_path):
    import shutil

    before = load_tokenizer(str(trained["newmm"]), "newmm").identity.digest
    copy = tmp_path / "model_dir"
    shutil.copytree(trained["newmm"], copy)
    (copy / "all_results.json").write_text("{}")
    (copy / "checkpoint-5").mkdir()
    (copy / "checkpoint-5" / "vocab.json").write_text("{}")
    assert load_tokenizer(str(copy), "newmm").identity.digest == before


def test_train_tokenizer_refuses_a_non_empty_output_dir(capsys, trained, thai_dir):
    assert train_tokenizer(["--type", "newmm", "--train_dir", str(thai_dir), "--output_dir", str(trained["spm"])]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_identity_includes_settings_and_files(trained, tmp_path):
    a = load_tokenizer(str(trained["spm"]), "spm", {"add_space_token": True}).identity
    b = load_tokenizer(str(trained["spm"]), "spm", {"add_space_token": False}).identity
    assert a.digest != b.digest and "sentencepiece.bpe.model" in a.files
    assert a.class_name == "ThaiRobertaTokenizer" and a.type == "spm"


@pytest.mark.parametrize("kind,looked_for", [("auto", "tokenizer.json, tokenizer_config.json, vocab.txt"),
                                              ("spm", r"\*\.model"), ("newmm", "vocab.json"),
                                              ("syllable", "vocab.json"), ("fake_sefr_cut", "vocab.json")])
def test_a_dir_without_the_types_files_is_refused_by_name(tmp_path, kind, looked_for):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(TokenizerError, match=rf"model: no tokenizer files for --tokenizer_type {kind} \(looked for "
                                             rf"{looked_for}.*; the dir holds config.json\); it looks like a model dir"):
        load_tokenizer(str(model), kind)
    if kind != "auto":  # auto reads every other type's files too
        (model / "tokenizer.json").write_text("{}")
        with pytest.raises(TokenizerError, match=r"its files suit --tokenizer_type auto: is that the type meant\?"):
            load_tokenizer(str(model), kind)


def test_a_users_own_class_by_module_path(trained, tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<_>", "a", "b"])}))
    from tests.fixtures.custom_tokenizer import CommaTokenizer

    CommaTokenizer(vocab_file=str(tmp_path / "vocab.json")).save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(str(tmp_path / "tok"), "tests.fixtures.custom_tokenizer:CommaTokenizer")
    assert loaded.tokenizer("a,b,c", add_special_tokens=False)["input_ids"] == [6, 7, 3]
    with pytest.raises(TokenizerError, match="cannot import Nope"):
        load_tokenizer(str(tmp_path / "tok"), "tests.fixtures.custom_tokenizer:Nope")


@pytest.mark.parametrize("kind,extra", [("spm", ["--add_space_token"]), ("ThaiWordsNewmmTokenizer", []),
                                        ("syllable", []), ("FakeSefrCutTokenizer", [])])
def test_preprocess_with_each_type_through_the_cli(capsys, tmp_path, trained, thai_dir, kind, extra):
    path, text = trained[resolve_type(kind)], thai_dir
    if resolve_type(kind) == "fake_sefr_cut":  # its vocabulary (กิน, ข้าว, eat) is of text split by <|>: on thai_dir
        text = tmp_path / "presplit"           # every line is one unknown word, which preprocessing refuses
        text.mkdir()
        (text / "a.txt").write_text("กิน<|>ข้าว<|> <|>eat\neat<|>กิน\n" * 50, encoding="utf-8")
    args = base_args(path, text, tmp_path / "cache", "--tokenizer_type", kind, *extra)
    args[args.index("--num_workers") + 1] = "2"
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0, err
    m = manifest(tmp_path / "cache")
    assert m["tokenizer"]["type"] == resolve_type(kind) and m["tokenizer"]["files"] and m["tokenizer"]["digest"]
    assert m["tokenizer"]["encoder"] == "native"
    assert m["totals"]["tokens"] > 0


@pytest.mark.parametrize("saved,asked,says", [
    ("newmm", "syllable", "ThaiWordsNewmmTokenizer, a --tokenizer_type newmm tokenizer, not syllable; "
                          "pass --tokenizer_type newmm"),
    ("syllable", "newmm", "pass --tokenizer_type syllable"),
    ("newmm", "auto", "ThaiWordsNewmmTokenizer, a --tokenizer_type newmm tokenizer, not auto"),
    ("spm", "newmm", "ThaiRobertaTokenizer, a --tokenizer_type spm tokenizer, not newmm"),
])
def test_a_dir_of_our_types_read_as_another_type_is_refused_in_one_line(capsys, tmp_path, trained, thai_dir,
                                                                          saved, asked, says):
    """A newmm vocabulary read as syllable loaded, and gave a cache (and a report) of nonsense: the type its
    tokenizer_config.json names must be the one asked; AutoTokenizer cannot read a word-level dir at all."""
    rc, _, err = run_cli(capsys, *base_args(trained[saved], thai_dir, tmp_path / "cache", "--tokenizer_type", asked))
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cache").exists()


def test_an_spm_dir_still_loads_as_auto_through_its_tokenizer_json_twin(trained):
    loaded = load_tokenizer(str(trained["spm"]), "auto")
    assert type(loaded.tokenizer).__name__ != "ThaiRobertaTokenizer" and loaded.identity.vocab_size > 5


def test_a_tokenizing_parameter_change_rebuilds_everything(capsys, tmp_path, trained, thai_dir):
    args = base_args(trained["spm"], thai_dir, tmp_path / "cache", "--tokenizer_type", "spm")
    assert run_cli(capsys, *args)[0] == 0
    rc, out, _ = run_cli(capsys, *args, "--add_space_token")
    assert rc == 0 and "0 shards reused, 3 tokenized" in out
    assert manifest(tmp_path / "cache")["tokenizer"]["settings"] == {"add_space_token": True}


def test_a_model_trained_with_spm_loads_back_with_autotokenizer(capsys, tmp_path, trained, thai_dir):
    from transformers import AutoModelForMaskedLM, pipeline

    from run_mlm import main as run_mlm_main

    out = tmp_path / "model"
    args = ["--tokenizer_name_or_path", str(trained["spm"]), "--tokenizer_type", "ThaiRobertaTokenizer",
            "--add_space_token", "--train_dir", str(thai_dir), "--datasets_cache_dir", str(tmp_path / "cache"),
            "--max_seq_length", "32", "--architecture", "roberta-tiny", "--output_dir", str(out),
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--save_strategy", "no", "--num_workers", "1"]
    assert run_mlm_main(args) == 0
    tok = AutoTokenizer.from_pretrained(out)  # no --tokenizer_type, no package class: the tokenizer.json twin
    ours = load_tokenizer(str(trained["spm"]), "spm", {"add_space_token": True}).tokenizer
    assert tok.is_fast and tok("สวัสดี ครับ")["input_ids"] == ours("สวัสดี ครับ")["input_ids"]
    fill = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(out), tokenizer=tok, device="cpu")
    assert len(fill(f"สวัสดี {tok.mask_token} ครับ")) == 5


@pytest.mark.slow
@pytest.mark.parametrize("kind,same_file", [("spm", "tokenizer.json"), ("newmm", "vocab.json"),
                                            ("syllable", "vocab.json")])
def test_mlm_train_tokenizer_still_makes_the_committed_fixtures(tmp_path, kind, same_file):
    """The console script, in its own process, on the fixtures' corpus: the same vocabulary."""
    import subprocess
    import sys

    from tests.fixtures.make_tokenizers import ARGS, OUT, thai_corpus

    text = thai_corpus(tmp_path / "text")
    r = subprocess.run([sys.executable, "-m", "preprocess.train_tokenizer", "--type", kind, "--train_dir", str(text),
                        "--output_dir", str(tmp_path / kind), "--num_workers", "2", *ARGS[kind]],
                       capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr[-2000:]
    made, committed = (json.loads((d / kind / same_file).read_text()) for d in (tmp_path, OUT))
    if kind == "spm":  # SentencePiece trains on threads: the same specials and size, nearly the same pieces
        made, committed = ([piece for piece, _ in d["model"]["vocab"]] for d in (made, committed))
        assert made[:6] == committed[:6] == ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<_>"]
        assert len(made) == len(committed) and len(set(made) & set(committed)) >= 0.9 * len(committed)
    else:  # counting is exact
        assert made == committed


def test_train_tokenizer_shows_every_phase(capsys, tmp_path, thai_dir):
    assert train_tokenizer(["--type", "spm", "--train_dir", str(thai_dir), "--vocab_size", "200",
                            "--output_dir", str(tmp_path / "spm"), "--num_workers", "1"]) == 0
    err = capsys.readouterr().err
    assert err.index("sample: reading") < err.index("spm: training")
    assert train_tokenizer(["--type", "newmm", "--train_dir", str(thai_dir), "--output_dir", str(tmp_path / "w"),
                            "--num_workers", "1"]) == 0
    err = capsys.readouterr().err
    assert err.index("sample: reading") < err.index("newmm: training")


def _bare_json(tmp_path: Path, specials: list[str]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate([*specials, "a", "b", "c"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(specials)
    d = tmp_path / f"bare{len(specials)}"
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    return d / "tokenizer.json"


def test_a_bare_tokenizer_json_takes_its_roles_from_its_added_tokens(capsys, tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    (train / "a.txt").write_text("a b c\nc b\n")
    good = _bare_json(tmp_path, ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    rc, _, err = run_cli(capsys, *base_args(good, train, tmp_path / "c"))
    assert rc == 0, err
    assert manifest(tmp_path / "c")["tokenizer"]["special_ids"] == {"bos": 1, "eos": 2, "pad": 3, "unk": 0, "mask": 4}
    no_mask = _bare_json(tmp_path, ["<unk>", "<s>", "</s>", "<pad>"])
    rc, _, err = run_cli(capsys, *base_args(no_mask, train, tmp_path / "c2"))
    assert rc == 2 and "names no mask_token among its added tokens" in err and len(err.strip().splitlines()) == 1


def _vocab_txt(d: Path, tokens: list[str]) -> Path:
    d.mkdir()
    (d / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return d


def test_a_dir_holding_only_vocab_txt_is_read_as_its_wordpiece_vocabulary(capsys, tmp_path, wordpiece_dir):
    """The fixture's WordPiece vocabulary (lowercased, accents stripped) as a bare vocab.txt gives the arrays of the
    saved tokenizer; a vocabulary with capitals is read cased, one with Thai marks keeps them; one without a
    role's token, or that is not one token a line, is one line saying what is missing."""
    from tests.preprocess.helpers import arrays

    vocab = json.loads((wordpiece_dir / "tokenizer.json").read_text())["model"]["vocab"]
    bare = _vocab_txt(tmp_path / "bare", sorted(vocab, key=vocab.get))
    train = tmp_path / "train"
    train.mkdir()
    (train / "a.txt").write_text("\n".join(thai_lines(200)) + "\nThe Language MODEL of ภาษาไทย\n", encoding="utf-8")
    for tok, cache in ((wordpiece_dir, tmp_path / "c_saved"), (bare, tmp_path / "c_bare")):
        rc, _, err = run_cli(capsys, *base_args(tok, train, cache))
        assert rc == 0 and "Traceback" not in err, err
    assert arrays(tmp_path / "c_bare") == arrays(tmp_path / "c_saved")
    assert manifest(tmp_path / "c_bare")["tokenizer"]["special_ids"] == {"bos": 2, "eos": 3, "pad": 0, "unk": 1,
                                                                        "mask": 4}
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    cased = load_tokenizer(str(_vocab_txt(tmp_path / "cased", [*specials, "The", "the", "ข่าว", "ข", "##าว"]))).tokenizer
    assert cased("The the ข่าว", add_special_tokens=False)["input_ids"] == [5, 6, 7]
    thai = load_tokenizer(str(_vocab_txt(tmp_path / "thai", [*specials, "the", "ข่าว", "ขาว"]))).tokenizer
    assert thai("The ข่าว ขาว", add_special_tokens=False)["input_ids"] == [5, 6, 7]  # lowercased, its marks kept
    for tokens, says in (([t for t in specials if t != "[MASK]"] + ["a"], "no [MASK]"),
                         ([*specials, "a 17", "b 3"], "line 6 ('a 17') holds a space")):
        rc, _, err = run_cli(capsys, *base_args(_vocab_txt(tmp_path / f"v{len(tokens)}", tokens), train,
                                                tmp_path / "c_bad"))
        assert rc == 2 and "vocab.txt" in err and says in err and len(err.strip().splitlines()) == 1, err
        assert "sentencepiece or tiktoken" not in err and not (tmp_path / "c_bad" / "train").exists()


def test_a_tokenizer_without_mask_or_pad_is_refused_at_preprocess(capsys, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
                            ).save_pretrained(tmp_path / "tok")
    train = tmp_path / "train"
    train.mkdir()
    (train / "a.txt").write_text("a a\n")
    rc, _, err = run_cli(capsys, *base_args(tmp_path / "tok", train, tmp_path / "c"))
    assert rc == 2 and "has no mask and no pad token" in err and "add_special_tokens" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c" / "train" / "manifest.json").exists()


def test_spm_takes_the_dirs_single_model_whatever_its_name(trained, tmp_path):
    import shutil

    d = tmp_path / "renamed"
    d.mkdir()
    shutil.copy(trained["spm"] / "sentencepiece.bpe.model", d / "tokenizer.model")
    tok = load_tokenizer(str(d), "spm", {"add_space_token": True}).tokenizer
    ref = load_tokenizer(str(trained["spm"]), "spm", {"add_space_token": True}).tokenizer
    assert tok("สวัสดี ครับ")["input_ids"] == ref("สวัสดี ครับ")["input_ids"]
