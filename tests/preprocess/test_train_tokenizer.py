"""mlm-train-tokenizer through its CLI: it reads what preprocess reads (nested dirs, every format, named
corpora), trains on a seeded sample in the shares asked, the same whatever the worker count, and what it
makes loads everywhere: AutoTokenizer, mlm-preprocess, mlm-train, a fill-mask pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from preprocess.train_tokenizer import main as train_tokenizer
from tests.corpus import make_lines
from tests.preprocess.test_formats import write_docs

WEIGHTS = {"books": 0.5, "news": 0.3, "web": 0.2}


def _corpora(root: Path) -> dict[str, Path]:
    """Three named corpora in three formats: nested .txt, .jsonl.zst and Parquet, each ~100-200 KB."""
    dirs = {n: root / n for n in WEIGHTS}
    for k in range(3):
        write_docs(dirs["books"] / f"part{k % 2}" / f"b{k}.txt", make_lines(700, seed=k, max_words=25), "txt")
    for k in range(2):
        write_docs(dirs["news"] / f"n{k}.jsonl.zst", make_lines(900, seed=10 + k, max_words=25), "jsonl.zst")
    write_docs(dirs["web"] / "w.parquet", make_lines(1500, seed=20, max_words=25), "parquet")
    return dirs


def _argv(dirs: dict[str, Path], out: Path, kind: str, *more: str) -> list[str]:
    spec = ",".join(f"{n}={d}" for n, d in dirs.items())
    return ["--type", kind, "--train_dir", spec, "--ext", "txt,jsonl.zst,parquet", "--recursive", "--output_dir",
            str(out), "--num_workers", "1", "--vocab_size", "500",
            "--mixture", ",".join(f"{n}={w}" for n, w in WEIGHTS.items()), *more]


def _train(capsys, dirs: dict[str, Path], out: Path, kind: str, *more: str) -> tuple[int, str, str]:
    rc = train_tokenizer(_argv(dirs, out, kind, *more))
    got = capsys.readouterr()
    return rc, got.out, got.err


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    return _corpora(tmp_path_factory.mktemp("corpora"))


def test_the_held_out_part_is_capped_in_bytes_per_corpus(capsys, monkeypatch, tmp_path, corpora):
    """2% of a corpus's sample, at most HELD_OUT_BYTES of its text (1 MiB; here 300 bytes, so that a small
    corpus shows it): at the default 1 GB sample, 2% was 20 MB the report segmented in one process and the
    tokenizer never trained on. Each corpus's share is recorded, and the report measures that part."""
    from preprocess import train_tokenizer as tt

    def held(out: Path) -> tuple[dict, dict]:
        record = json.loads((out / "training.json").read_text())["corpora"]
        report = json.loads((out / "tokenizer_report.json").read_text())["corpora"]
        return record, {n: report[n]["trained"]["characters"] for n in record}

    assert _train(capsys, corpora, tmp_path / "two", "bpe", "--sample_bytes", "0.0002")[0] == 0
    record, two = held(tmp_path / "two")
    assert all(c["held_out"] == 0.02 for c in record.values())
    monkeypatch.setattr(tt, "HELD_OUT_BYTES", 300)
    assert _train(capsys, corpora, tmp_path / "capped", "bpe", "--sample_bytes", "0.0002")[0] == 0
    record, capped = held(tmp_path / "capped")
    for corpus in record.values():
        assert corpus["held_out"] == pytest.approx(300 / corpus["text_bytes"])  # under 2% of 40-100 KB
    assert 0 < sum(capped.values()) < sum(two.values()) / 2, (capped, two)


def test_the_sample_is_drawn_in_the_shares_asked_and_recorded(capsys, tmp_path, corpora):
    rc, out, err = _train(capsys, corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0002")
    assert rc == 0, err
    record = json.loads((tmp_path / "tok" / "training.json").read_text())
    total = record["sample"]["text_bytes"]
    assert 200_000 <= total < 201_000
    for name, w in WEIGHTS.items():
        assert abs(record["corpora"][name]["text_bytes"] / total - w) < 0.02, (name, record["corpora"][name])
        assert record["corpora"][name]["shards"] and all(s["digest"] for s in record["corpora"][name]["shards"])
    assert "the sample's share of each corpus" in out
    assert (tmp_path / "tok" / "tokenizer_report.json").is_file()
    # Every corpus holds more than its share: none is short, whatever line its draw ended on.
    assert "gave less text than" not in err and "are cut to keep the shares" not in err, err


@pytest.mark.parametrize("mixture, asked", [("books=1,web=0", {"books": 1.0}), ("books=1,web=1", {"books": 0.5, "web": 0.5}),
                                            ("books=1", {"books": 1.0})])
def test_the_shares_asked_hold_when_the_corpora_are_smaller_than_the_sample(capsys, tmp_path, corpora, mixture, asked):
    """The default 1 GB sample reads these corpora whole: the mixture still decides what is trained on (a
    corpus of weight 0 not at all), the corpus short of its share setting the sample's size."""
    spec = f"books={corpora['books']},web={corpora['web']}"
    rc = train_tokenizer(["--type", "bpe", "--train_dir", spec, "--ext", "txt,parquet", "--recursive", "--output_dir",
                          str(tmp_path / "tok"), "--num_workers", "1", "--vocab_size", "500", "--mixture", mixture])
    err = capsys.readouterr().err
    assert rc == 0, err
    record = json.loads((tmp_path / "tok" / "training.json").read_text())
    assert set(record["corpora"]) == set(asked)
    total = record["sample"]["text_bytes"]
    for name, w in asked.items():
        assert abs(record["corpora"][name]["text_bytes"] / total - w) < 0.02, (name, record["corpora"])
    assert ("gave less text than its share" in err) == (len(asked) == 2), err


def test_one_or_two_workers_give_the_same_sample_and_bpe_the_same_files(capsys, tmp_path, corpora, monkeypatch):
    from preprocess import sample, train_tokenizer

    readers_for = train_tokenizer.readers_for
    assert readers_for(10 << 20, 2) == 0 and readers_for(1 << 40, 8) == 8 and readers_for(1 << 40, 1) == 0
    monkeypatch.setattr(train_tokenizer, "READ_PER_READER", 1)  # these corpora are small: read in 2 processes
    forked, real = [], sample.Workers
    monkeypatch.setattr(sample, "Workers", lambda n, fn: forked.append(n) or real(n, fn))
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"tok{workers}"
        rc, _, err = _train(capsys, corpora, out, "bpe", "--sample_bytes", "0.0001", "--num_workers", workers)
        assert rc == 0, err
        outs.append(out)
    assert forked == [2]  # one pool of 2 readers, for every corpus, and none with --num_workers 1
    digests = [json.loads((o / "training.json").read_text())["sample"]["digest"] for o in outs]
    assert digests[0] == digests[1]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()


def test_byte_level_bpe_round_trips_thai_and_english_and_loads_with_autotokenizer(capsys, tmp_path, corpora):
    from transformers import AutoTokenizer

    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0001")
    assert rc == 0, err
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    for text in ("ฉัน ชอบกิน ข้าว ตอนเช้า", "The quick brown fox, naïve café 😀", "ภาษาไทย and English ๑๒๓"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text and tok.unk_token_id not in ids


@pytest.mark.parametrize("more, says", [
    (["--mixture", "books=1,nope=1"], "no corpus 'nope'"),
    (["--vocab_size", "0"], "too small"),
    (["--sample_bytes", "inf"], "--sample_bytes inf: must be a positive number"),
    (["--mixture_alpha", "0.5"], "--mixture and --mixture_alpha both given"),
    (["--min_frequency", "0"], "--min_frequency 0: must be at least 1"),
    (["--character_coverage", "0.5"], "--character_coverage 0.5: SentencePiece takes 0.98 to 1"),
    (["--character_coverage", "1.5"], "--character_coverage 1.5: SentencePiece takes 0.98 to 1"),
    (["--num_workers", "0"], "--num_workers 0: must be at least 1"),
])
def test_refusals_come_before_any_reading(capsys, tmp_path, corpora, more, says):
    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe", *more)
    assert rc == 2 and says in err and len([x for x in err.splitlines() if x.startswith("error:")]) == 1, err
    assert "sample: reading" not in err


def test_one_dir_under_two_corpus_names_is_refused_as_mlm_preprocess_refuses_it(capsys, tmp_path, corpora):
    """It would be drawn twice, its share of the sample doubled, under two names."""
    argv = _argv({**corpora, "copy": corpora["books"]}, tmp_path / "tok", "bpe")
    rc, err = train_tokenizer(argv[: argv.index("--mixture")]), capsys.readouterr().err
    assert rc == 2 and "--train_dir books=... and copy=... share text" in err and "sample: reading" not in err, err
    assert not (tmp_path / "tok").exists()


@pytest.mark.parametrize("alpha", ["-1", "1.5", "nan"])
def test_a_mixture_alpha_outside_0_to_1_is_refused_as_mlm_train_refuses_it(capsys, tmp_path, corpora, alpha):
    spec = ",".join(f"{n}={d}" for n, d in corpora.items())
    rc = train_tokenizer(["--type", "bpe", "--train_dir", spec, "--ext", "txt,jsonl.zst,parquet", "--recursive",
                          "--output_dir", str(tmp_path / "tok"), "--vocab_size", "500", "--mixture_alpha", alpha])
    err = capsys.readouterr().err
    assert rc == 2 and f"--mixture_alpha {alpha}: must be between 0 and 1" in err and "sample: reading" not in err, err


def test_a_non_empty_output_dir_is_refused(capsys, tmp_path, corpora):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe")
    assert rc == 2 and "is not empty" in err


@pytest.mark.parametrize("where, says", [
    ("afile", "afile is a file, not a dir"),
    ("afile/tok", "afile is a file, not a dir; give a path under a dir"),
    ("afile/deeper/tok", "afile is a file, not a dir; give a path under a dir"),
])
def test_an_output_dir_that_cannot_be_made_is_refused_before_reading(capsys, tmp_path, corpora, where, says):
    (tmp_path / "afile").write_text("not a dir")
    rc, _, err = _train(capsys, corpora, tmp_path / where, "bpe")
    assert rc == 2 and says in err and "Traceback" not in err and "sample: reading" not in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only dir")
def test_an_output_dir_in_a_read_only_dir_is_refused_before_reading(capsys, tmp_path, corpora):
    (tmp_path / "ro").mkdir(mode=0o555)
    rc, _, err = _train(capsys, corpora, tmp_path / "ro" / "tok", "bpe")
    assert rc == 2 and "cannot be written" in err and "sample: reading" not in err, err


def test_a_txt_shard_that_is_not_utf8_is_refused_and_bad_records_are_counted(capsys, tmp_path):
    """Thai in TIS-620 named .txt decodes to U+FFFD: the tokenizer would learn it, and look valid."""
    lines = make_lines(2000, seed=5, max_words=20)
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "th.txt").write_bytes("\n".join(f"ภาษาไทย {s}" for s in lines).encode("cp874"))
    write_docs(tmp_path / "ok" / "a.txt", lines, "txt")
    rc = train_tokenizer(["--type", "bpe", "--train_dir", f"{tmp_path / 'ok'},{tmp_path / 'legacy'}", "--output_dir",
                          str(tmp_path / "tok"), "--num_workers", "1", "--vocab_size", "300"])
    err = capsys.readouterr().err
    assert rc == 2 and "th.txt: " in err and "not UTF-8" in err and "iconv" in err, err
    assert "a.txt" not in err and not (tmp_path / "tok").exists()
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "a.jsonl").write_text("\n".join([*(json.dumps({"text": s}) for s in lines), "{cut", '{"x": 1}']))
    rc = train_tokenizer(["--type", "bpe", "--train_dir", str(tmp_path / "j"), "--ext", "jsonl", "--output_dir",
                          str(tmp_path / "tok"), "--num_workers", "1", "--vocab_size", "300"])
    err = capsys.readouterr().err
    assert rc == 0 and "note: 2 records without usable text skipped" in err and "a.jsonl (2)" in err, err


def test_a_corpus_too_small_to_hold_out_a_line_reports_no_figures_not_zeros(capsys, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.txt").write_text("ฉันชอบกินข้าว ตอนเช้า\n")
    rc = train_tokenizer(["--type", "newmm", "--train_dir", str(tmp_path / "one"), "--output_dir", str(tmp_path / "tok"),
                          "--num_workers", "1"])
    got = capsys.readouterr()
    assert rc == 0, got.err
    assert "note: corpus: none of its 1 sampled lines fell in the held-out 2%" in got.err
    m = json.loads((tmp_path / "tok" / "tokenizer_report.json").read_text())["corpora"]["corpus"]["trained"]
    assert m["lines"] == 0 and m["tokens_per_unit"] is None and m["unk_rate"] is None
    row = next(x for x in got.out.splitlines() if x.startswith("corpus  trained"))
    assert row.split()[2:6] == ["-", "word", "-", "-"], row


def test_mlm_inspect_show_says_where_the_cache_s_tokenizer_came_from(capsys, tmp_path, corpora):
    from preprocess.__main__ import main as preprocess_main
    from preprocess.inspect_cache import main as inspect_main

    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0001")
    assert rc == 0, err
    assert preprocess_main(["--tokenizer_name_or_path", str(tmp_path / "tok"), "--train_dir", str(corpora["books"]),
                            "--recursive", "--datasets_cache_dir", str(tmp_path / "cache"), "--max_seq_length", "64",
                            "--num_workers", "1"]) == 0
    capsys.readouterr()
    assert inspect_main(["show", str(tmp_path / "cache" / "train")]) == 0
    digest = json.loads((tmp_path / "tok" / "training.json").read_text())["sample"]["digest"]
    assert f"digest {digest}" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["bpe", *(pytest.param(k, marks=pytest.mark.slow)  # ~10 s each: the slow job
                                             for k in ("wordpiece", "unigram", "spm", "newmm", "syllable"))])
def test_every_family_runs_the_whole_path_through_the_cli(capsys, tmp_path, corpora, kind):
    """tokenizer -> mlm-preprocess (the three named corpora) -> mlm-train (mixed) -> fill-mask."""
    from transformers import AutoModelForMaskedLM, pipeline

    from common.tokenizer import load_tokenizer
    from preprocess.__main__ import main as preprocess_main
    from preprocess.tokenizer_families import FAMILIES
    from train.__main__ import main as train_main

    rc, _, err = _train(capsys, corpora, tmp_path / "tok", kind, "--sample_bytes", "0.0002")
    assert rc == 0, err
    rc, _, err = _train(capsys, corpora, tmp_path / "tok2", kind, "--sample_bytes", "0.0002", "--num_workers", "2")
    assert rc == 0, err
    records = [json.loads((tmp_path / t / "training.json").read_text()) for t in ("tok", "tok2")]
    assert records[0]["sample"] == records[1]["sample"]  # the same sample, digest included, on 1 or 2 workers
    if FAMILIES[kind].deterministic:
        made = sorted(p.name for p in (tmp_path / "tok").iterdir() if p.name not in ("training.json",))
        for name in made:
            assert (tmp_path / "tok" / name).read_bytes() == (tmp_path / "tok2" / name).read_bytes(), name
    ttype = FAMILIES[kind].tokenizer_type
    spec = ",".join(f"{n}={d}" for n, d in corpora.items())
    common = ["--tokenizer_name_or_path", str(tmp_path / "tok"), "--tokenizer_type", ttype,
              "--datasets_cache_dir", str(tmp_path / "cache"), "--max_seq_length", "64"]
    assert preprocess_main([*common, "--train_dir", spec, "--ext", "txt,jsonl.zst,parquet", "--recursive",
                            "--validation_split_percentage", "5", "--num_workers", "1"]) == 0
    assert train_main([*common, "--architecture", "roberta-tiny", "--output_dir", str(tmp_path / "model"),
                       "--max_steps", "3", "--per_device_train_batch_size", "8", "--save_strategy", "no",
                       "--report_to", "none", "--mixture", "books=0.5,news=0.3,web=0.2"]) == 0
    tok = load_tokenizer(str(tmp_path / "model"), ttype).tokenizer
    fill = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(str(tmp_path / "model")), tokenizer=tok,
                    device="cpu")
    assert len(fill(f"the cat {tok.mask_token} the ball", top_k=2)) == 2


@pytest.mark.parametrize("kind", ["bpe", "unigram", "newmm"])
def test_a_tokenizer_is_written_and_checked_without_importing_transformers(tmp_path, corpora, kind):
    """Importing transformers took 0.8 s of a 2.9 s bpe run (bench/tokenizer_train.py): a tokenizers-backed
    family is saved and read back by common/fast_tokenizer.py, a word-level one by common/word_level.py,
    and the train stage's loaders still load them."""
    import subprocess
    import sys

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from common.tokenizer import load_tokenizer

    spec = ",".join(f"{n}={d}" for n, d in corpora.items())
    code = ("import sys; from preprocess.train_tokenizer import main; rc = main(sys.argv[1:]); "
            "print('imported:', sorted(m for m in ('transformers', 'torch') if m in sys.modules)); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "--type", kind, "--train_dir", spec, "--ext", "txt,jsonl.zst,parquet",
                        "--recursive", "--output_dir", str(tmp_path / "tok"), "--num_workers", "1", "--vocab_size", "500",
                        "--sample_bytes", "0.0001"], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "imported: []", r.stdout[-500:]
    if kind == "newmm":
        tok = load_tokenizer(str(tmp_path / "tok"), "newmm").tokenizer
        assert type(tok).__name__ == "ThaiWordsNewmmTokenizer" and f"tokenizer with {len(tok):,} ids" in r.stdout
        return
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert isinstance(tok, PreTrainedTokenizerFast) and f"tokenizer with {len(tok):,} ids" in r.stdout
    assert tok.mask_token == "<mask>" and tok.pad_token_id == 1


def test_the_console_script_ends_without_teardown_yet_its_output_and_files_are_complete(tmp_path, corpora):
    """``python -m preprocess.train_tokenizer`` (and mlm-train-tokenizer) ends with os._exit once main returns:
    stdout and stderr piped, every line must still arrive, the tokenizer be whole, and an error keep rc 2."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # piped stdout is block-buffered
    spec = ",".join(f"{n}={d}" for n, d in corpora.items())
    argv = [sys.executable, "-m", "preprocess.train_tokenizer", "--type", "newmm", "--train_dir", spec, "--ext",
            "txt,jsonl.zst,parquet", "--recursive", "--num_workers", "2", "--sample_bytes", "0.0001", "--output_dir"]
    r = subprocess.run([*argv, str(tmp_path / "tok")], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).parents[2], env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.rstrip().splitlines()[-1].startswith("newmm tokenizer with ") and "sample: reading" in r.stderr
    files = {p.name for p in (tmp_path / "tok").iterdir()}
    assert {"vocab.json", "tokenizer_config.json", "training.json", "tokenizer_report.json"} <= files
    json.loads((tmp_path / "tok" / "training.json").read_text())  # whole, not cut off
    again = subprocess.run([*argv, str(tmp_path / "tok")], capture_output=True, text=True, timeout=300,
                           cwd=Path(__file__).parents[2], env=env)
    assert again.returncode == 2 and again.stderr.rstrip().splitlines()[-1].startswith("error: "), again.stderr


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_training_on_tokenizers_threads_gives_the_same_files(tmp_path, corpora, kind):
    """The CLI leaves TOKENIZERS_PARALLELISM as the user set it: unset, tokenizers trains on every core (after
    the sample's readers were forked), and the files are those it makes with it off."""
    import os
    import subprocess
    import sys

    made = {}
    for setting in ("false", None):
        env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}
        env.update({"TOKENIZERS_PARALLELISM": setting} if setting else {})
        out = tmp_path / f"tok_{setting}"
        r = subprocess.run([sys.executable, "-m", "preprocess.train_tokenizer",
                            *_argv(corpora, out, kind, "--sample_bytes", "0.0002", "--num_workers", "2")],
                           capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])
        assert r.returncode == 0, r.stderr[-2000:]
        made[setting] = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "training.json"}
    assert made["false"] == made[None]


@pytest.mark.parametrize("kind, more, says", [
    ("bpe", ["--sample_bytes", "0.00001"], "too small for --vocab_size"),  # 10 KB for 512 ids: before reading
    ("bpe", ["--vocab_size", "4000"], "too little for a vocabulary of 4,032 ids"),  # the corpus itself is too small
    ("spm", ["--character_coverage", "1", "--vocab_size", "16", "--vocab_multiple", "1"], "keeps all"),
    ("unigram", ["--character_coverage", "1", "--vocab_size", "16", "--vocab_multiple", "1"], "keeps all"),
])
def test_a_sample_the_vocabulary_cannot_come_from_is_one_line(capsys, tmp_path, corpora, kind, more, says):
    small = {"web": corpora["web"]}
    spec = ",".join(f"{n}={d}" for n, d in small.items())
    rc = train_tokenizer(["--type", kind, "--train_dir", spec, "--ext", "parquet", "--output_dir",
                          str(tmp_path / "tok"), "--num_workers", "1", "--vocab_size", "500", *more])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and len([x for x in err.splitlines() if x.startswith("error:")]) == 1, err


def test_a_corpus_too_small_for_any_vocabulary_says_to_add_text_not_to_lower_the_size(capsys, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.txt").write_text("just one line of text here\n")
    rc = train_tokenizer(["--type", "bpe", "--train_dir", str(tmp_path / "one"), "--output_dir", str(tmp_path / "tok"),
                          "--num_workers", "1", "--vocab_size", "300"])
    err = capsys.readouterr().err
    assert rc == 2 and "gives 26 bytes of text" in err and "add text: the smallest vocabulary, 16 ids" in err, err
    assert "at most 0" not in err


def test_a_word_level_vocabulary_of_no_word_is_refused(capsys, tmp_path, corpora):
    rc = train_tokenizer(["--type", "syllable", "--train_dir", str(corpora["web"]), "--ext", "parquet", "--output_dir",
                          str(tmp_path / "tok"), "--num_workers", "1", "--sample_bytes", "0.00002",
                          "--min_frequency", "1000000"])
    err = capsys.readouterr().err
    assert rc == 2 and "--min_frequency 1000000 leaves no word" in err and "Traceback" not in err, err
    assert not (tmp_path / "tok").exists()


def test_a_failed_training_leaves_no_output_dir_and_a_rerun_works(capsys, tmp_path, corpora, monkeypatch):
    from preprocess import tokenizer_families

    def broken(lines, out, options):
        (out / "half_written.json").write_text("{")
        raise KeyboardInterrupt  # Ctrl-C in the middle of training

    monkeypatch.setitem(tokenizer_families.FAMILIES, "bpe",
                        tokenizer_families.FAMILIES["bpe"].__class__(**{**vars(tokenizer_families.FAMILIES["bpe"]),
                                                                        "train": broken}))
    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0001")
    assert rc == 130 and not (tmp_path / "tok").exists() and not list(tmp_path.glob(".tok.partial-*")), err
    monkeypatch.undo()
    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0001")
    assert rc == 0, err


def test_a_word_count_worker_killed_is_one_line_naming_num_workers_and_leaves_nothing(capsys, tmp_path, corpora,
                                                                                       monkeypatch):
    """The out-of-memory killer's SIGKILL of a newmm count worker (each holds its own ~75 MB dictionary):
    one line that says what to change, no traceback, no output dir."""
    import os
    import signal

    from preprocess import word_counts

    real = word_counts._work
    parent = os.getpid()

    def killed(task):
        if os.getpid() != parent:  # in a forked worker, as the kernel would
            os.kill(os.getpid(), signal.SIGKILL)
        return real(task)

    monkeypatch.setattr(word_counts, "_work", killed)
    monkeypatch.setattr(word_counts, "COUNT_LINES", 5)  # tasks enough for two workers on this small sample
    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "newmm", "--sample_bytes", "0.0001", "--num_workers", "2")
    lines = err.strip().splitlines()
    assert rc == 2 and lines[-1].startswith("error: a tokenizer worker (pid "), err
    assert "killed: out of memory?" in lines[-1] and "fewer --num_workers" in lines[-1], err
    assert "Traceback" not in err and not (tmp_path / "tok").exists() and not list(tmp_path.glob(".tok.partial-*"))


def test_a_run_that_finds_its_output_dir_filled_by_another_keeps_the_other_s_files(capsys, tmp_path, corpora,
                                                                                     monkeypatch):
    """Two runs racing for one --output_dir: both pass the empty-dir check; the one that finishes second
    says so in one line and leaves the first one's tokenizer as it is."""
    from preprocess import tokenizer_families

    bpe = tokenizer_families.FAMILIES["bpe"]

    def other_run_finishes_first(lines, out, options):
        (tmp_path / "tok").mkdir()
        (tmp_path / "tok" / "tokenizer.json").write_text("the other run's")
        bpe.train(lines, out, options)

    monkeypatch.setitem(tokenizer_families.FAMILIES, "bpe", bpe.__class__(**{**vars(bpe),
                                                                            "train": other_run_finishes_first}))
    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0001")
    assert rc == 2 and "was filled by another run while this one trained" in err and "Traceback" not in err, err
    assert [p.name for p in (tmp_path / "tok").iterdir()] == ["tokenizer.json"]
    assert (tmp_path / "tok" / "tokenizer.json").read_text() == "the other run's"
    assert not list(tmp_path.glob(".tok.partial-*"))


def test_a_killed_run_s_partial_dir_is_removed_by_the_next_run_and_a_live_one_kept(capsys, tmp_path, corpora):
    """SIGKILL mid-training leaves ``.tok.partial-<host>.<pid>``: the next run for ``--output_dir tok``
    deletes it (its process is gone) and says so in one line; a live process's and another host's stay."""
    import signal
    import subprocess
    import sys
    import time

    from common.format import writer_id

    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "preprocess.train_tokenizer",
                             *_argv(corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0002")],
                            stdout=log, stderr=log, cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".tok.partial-*")):
        assert proc.poll() is None, f"the run ended before it wrote: {(tmp_path / 'killed.log').read_text()[-800:]}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(tmp_path.glob(".tok.partial-*"))
    assert [d.name for d in left] == [f".tok.partial-{writer_id().rpartition('.')[0]}.{proc.pid}"]
    assert not (tmp_path / "tok").exists()
    live = tmp_path / f".tok.partial-{writer_id().rpartition('.')[0]}.1"  # pid 1 always runs
    elsewhere = tmp_path / f".tok.partial-another_host.{proc.pid}"  # another host's run: its pid says nothing here
    live.mkdir()
    elsewhere.mkdir()
    rc, _, err = _train(capsys, corpora, tmp_path / "tok", "bpe", "--sample_bytes", "0.0002")
    assert rc == 0, err
    assert [x for x in err.splitlines() if "removed" in x] == [
        f"note: removed {left[0]}, the unfinished output of a run for this --output_dir that was killed "
        f"(process {proc.pid} is gone)"]
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert sorted(tmp_path.glob(".tok.partial-*")) == sorted([live, elsewhere])


def test_meanwhile_runs_its_work_on_a_thread_while_the_block_runs_and_raises_its_error():
    import threading

    from preprocess.workers import meanwhile

    ran, started = [], threading.Event()
    with meanwhile(lambda: ran.append(threading.current_thread().name) or started.set()):
        assert started.wait(10)  # it runs while the block does, not after it
    assert ran == ["meanwhile"]
    with pytest.raises(ZeroDivisionError), meanwhile(lambda: 1 / 0):
        pass
    with meanwhile(None):
        pass
