"""Parquet, JSON Lines and compressed text: the same text gives the same arrays as .txt; bad records are counted."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.corpus import make_lines
from tests.preprocess.helpers import arrays, base_args, manifest, run_cli

FORMATS = ["txt", "txt.gz", "txt.zst", "jsonl", "jsonl.gz", "jsonl.zst", "json", "parquet"]


def documents(seed: int = 0, n: int = 300) -> list[str]:
    """Documents of 1-3 lines, some with blank lines, CRLF and spaces to clean; one line far longer
    than a task (cut into open ranges in .txt), so every cutting rule is crossed."""
    rng = random.Random(seed)
    lines = make_lines(n, seed=seed)
    docs, i = [], 0
    while i < len(lines):
        k = rng.randint(1, 3)
        docs.append(rng.choice(["\n", "\r\n", "\n\n  "]).join(lines[i : i + k]) + rng.choice(["", " ", "\n"]))
        i += k
    docs.insert(len(docs) // 2, " ".join(make_lines(400, seed=seed + 1, max_words=40)))  # ~ 60 KB, one line
    return docs


def compress(data: bytes, codec: str | None) -> bytes:
    if codec == "gz":
        return gzip.compress(data[: len(data) // 3]) + gzip.compress(data[len(data) // 3 :])  # two members
    if codec == "zst":
        return pa.compress(data, codec="zstd", asbytes=True)
    return data


def write_docs(path: Path, docs: list[str], ext: str) -> Path:
    """``docs`` in the format ``ext`` names; JSON records carry other fields the reader must ignore."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base, _, codec = ext.partition(".")
    if base == "parquet":
        table = pa.table({"id": list(range(len(docs))), "text": docs, "url": [f"u{i}" for i in range(len(docs))]})
        pq.write_table(table, path, row_group_size=37)
        return path
    if base == "txt":
        data = "\n".join(docs).encode()
    else:
        data = "".join(json.dumps({"id": i, "text": d, "meta": {"n": i}}, ensure_ascii=i % 2 == 0) + "\n"
                       for i, d in enumerate(docs)).encode()
    path.write_bytes(compress(data, codec or None))
    return path


@pytest.mark.parametrize("ext", FORMATS[1:])
def test_every_format_gives_the_arrays_of_the_same_text_as_txt(capsys, tmp_path, wordpiece_dir, ext):
    docs = documents()
    small = ("--task_size_mb", "0.01")  # 10 KB: several tasks, row-group runs and chunks per file
    write_docs(tmp_path / "txt" / "corpus.txt", docs, "txt")
    write_docs(tmp_path / ext / f"corpus.{ext}", docs, ext)
    assert run_cli(capsys, *base_args(wordpiece_dir, tmp_path / "txt", tmp_path / "c_txt", *small))[0] == 0
    rc, out, err = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / ext, tmp_path / "c", "--ext", ext, *small))
    assert rc == 0, err
    want, got = arrays(tmp_path / "c_txt"), arrays(tmp_path / "c")
    assert list(got.values()) == list(want.values())
    m, m_txt = manifest(tmp_path / "c"), manifest(tmp_path / "c_txt")
    assert m["totals"]["lines"] == m_txt["totals"]["lines"] > len(docs)
    assert m["totals"]["bad_records"] == 0 and "warning" not in err
    # a rerun reads nothing again; the key depends on how the bytes are read
    rc, out, _ = run_cli(capsys, *base_args(wordpiece_dir, tmp_path / ext, tmp_path / "c", "--ext", ext, *small))
    assert rc == 0 and "cache is fresh" in out
