"""Listing the inputs (common/check.py): one extension or several, each file once."""

from __future__ import annotations

from common.check import list_inputs, list_text_files, listed_ext


def test_several_extensions_list_each_file_once_by_its_longest_listed_extension(tmp_path):
    for name in ("a.txt", "b.jsonl", "c.jsonl.zst", "d.parquet", "e.md", "f.txt.zst", "sub/g.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / "dir.txt").mkdir()  # a dir named like a shard is not one

    def names(ext: str, recursive: bool = False) -> list[str]:
        return [p.relative_to(tmp_path).as_posix() for p in list_text_files(tmp_path, ext, recursive)]

    assert names("txt") == ["a.txt"]  # one extension: as before
    assert names("jsonl,jsonl.zst") == ["b.jsonl", "c.jsonl.zst"]  # not c twice
    assert names("txt,jsonl.zst,parquet") == ["a.txt", "c.jsonl.zst", "d.parquet"]
    assert names("txt,jsonl.zst,parquet", True) == ["a.txt", "c.jsonl.zst", "d.parquet", "sub/g.parquet"]
    assert [n for n, _ in list_inputs([tmp_path], "parquet,zst", True)] == ["c.jsonl.zst", "d.parquet",
                                                                           "f.txt.zst", "sub/g.parquet"]
    assert listed_ext("c.jsonl.zst", "txt,zst,jsonl.zst") == "jsonl.zst"  # the longest, whatever the order
    assert listed_ext("f.txt.zst", "txt,zst,jsonl.zst") == "zst"
    assert listed_ext("a.txt", "parquet") is None
