"""The tokenizer's sample (preprocess/sample.py): drawn through preprocess's own readers, uniform over
every part of the corpus, the same whatever the worker count, bounded by the sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.formats import formats_of
from preprocess.inputs import list_shards
from preprocess.sample import CorpusFiles, Readers, draw, sample_digest
from tests.corpus import make_lines
from tests.preprocess.test_formats import write_docs


def _corpus(root: Path) -> CorpusFiles:
    """Nested .txt, .jsonl.zst and Parquet files of known lines, each line tagged with its file and number."""
    for k, ext in enumerate(["txt", "jsonl.zst", "parquet", "txt", "jsonl.zst"]):
        lines = [f"f{k}l{i} {s}" for i, s in enumerate(make_lines(600, seed=k, max_words=20))]
        write_docs(root / f"part{k % 2}" / f"doc{k}.{ext}", lines, ext)
    fmts = formats_of("txt,jsonl.zst,parquet")
    return CorpusFiles("c", list_shards(str(root), fmts, "--train_dir", True, "text", has_recursive=True))


def test_the_sample_is_the_same_with_one_or_two_workers_and_spread_over_every_file(tmp_path):
    corpus = _corpus(tmp_path / "text")
    one = draw(corpus, 40_000, seed=3, column="text", readers=Readers(0))
    with Readers(1) as readers:
        assert draw(corpus, 40_000, seed=3, column="text", readers=readers).lines == one.lines
    with Readers(2) as readers:  # forked once, for two draws
        two = draw(corpus, 40_000, seed=3, column="text", readers=readers)
        assert draw(corpus, 40_000, seed=3, column="text", readers=readers).lines == two.lines
    assert one.lines == two.lines and sample_digest(one.lines) == sample_digest(two.lines)
    assert 40_000 <= one.text_bytes < 40_000 + 1_000  # the budget, to within one line
    files = {s.split("l", 1)[0] for s in one.lines}
    assert files == {f"f{k}" for k in range(5)}  # every file, in every format, gives lines
    other = draw(corpus, 40_000, seed=4, column="text", readers=Readers(0))
    assert sample_digest(other.lines) != sample_digest(one.lines)


def test_a_sample_bigger_than_the_corpus_is_the_whole_corpus(tmp_path):
    corpus = _corpus(tmp_path / "text")
    drawn = draw(corpus, 10**9, seed=0, column="text", readers=Readers(0))
    assert drawn.everything and len(drawn.lines) == 5 * 600


@pytest.mark.parametrize("target", [5_000, 60_000])
def test_only_a_share_of_the_skippable_text_is_read(tmp_path, target):
    corpus = _corpus(tmp_path / "text")
    drawn = draw(corpus, target, seed=1, column="text", readers=Readers(0))
    whole = draw(corpus, 10**9, seed=1, column="text", readers=Readers(0))
    assert drawn.read_bytes < whole.read_bytes


def test_a_compressed_json_lines_record_out_of_the_sample_is_never_parsed(tmp_path, monkeypatch):
    """A compressed stream is read whole, but each JSON Lines record is keyed by its line number, so only
    the records under the threshold are parsed (the JSON parse was most of the draw on the bench's
    .jsonl.zst corpus): a 1 GB sample of a 100 GB corpus parses about 1% of its records. The sample is
    still the bottom of the key order (the whole corpus's lines, cut at the budget), and a record's lines
    stay together, in order."""
    from preprocess import readers as readers_module
    from preprocess.sample import _first_bytes

    docs = [f"r{i} first {s}\nr{i} second" for i, s in enumerate(make_lines(3000, seed=9, max_words=12))]
    write_docs(tmp_path / "news" / "a.jsonl.zst", docs, "jsonl.zst")
    corpus = CorpusFiles("news", list_shards(str(tmp_path / "news"), formats_of("jsonl.zst"), "--train_dir", False,
                                             "text", has_recursive=True))
    parsed: list[str] = []
    original = readers_module.record_text
    monkeypatch.setattr(readers_module, "record_text", lambda line, column: parsed.append(line) or original(line, column))
    target = 4_000
    drawn = draw(corpus, target, seed=7, column="text", readers=Readers(0))
    assert 0 < len(parsed) < len(docs) // 4  # the records under the threshold, not every one
    parsed.clear()
    whole = draw(corpus, 10**9, seed=7, column="text", readers=Readers(0))
    assert len(parsed) == len(docs) and whole.everything
    assert drawn.lines == _first_bytes(whole.lines, target)[0]
    for i, s in enumerate(drawn.lines[:-1]):  # each record's two lines, one after the other (the budget may
        if " first " in s:                     # cut after the first line of the last record)
            assert drawn.lines[i + 1] == s.split(" first ")[0] + " second"
    with Readers(2) as readers:  # and the same in reader processes
        assert draw(corpus, target, seed=7, column="text", readers=readers).lines == drawn.lines
