"""A shard in a legacy 8-bit encoding (TIS-620 Thai, CP1252) is named, with its share of replaced bytes and a
labelled guess of the iconv line that converts it; --strict refuses it (issue 22 item 2)."""

from __future__ import annotations

from pathlib import Path

from tests.preprocess.helpers import base_args, run_cli

THAI = "ภาษาไทย สวัสดีครับ ข้อมูล การเรียนรู้"


def _corpus(d: Path, name: str, text: str, encoding: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(("\n".join([text] * 200) + "\n").encode(encoding))
    (d / "fine.txt").write_text("\n".join(["plain text in utf-8, as it should be"] * 200) + "\n")


def test_a_tis620_shard_is_named_with_its_share_and_the_iconv_guess(capsys, tmp_path, bpe_dir):
    _corpus(tmp_path / "t", "legacy.txt", THAI, "tis_620")
    rc, _, err = run_cli(capsys, *base_args(bpe_dir, tmp_path / "t", tmp_path / "c"))
    warned = [x for x in err.splitlines() if "likely not UTF-8" in x]
    replaced = (tmp_path / "t" / "legacy.txt").read_bytes().decode("utf-8", errors="replace").count("\ufffd")
    assert rc == 0 and len(warned) == 1 and f"legacy.txt: {replaced:,} invalid UTF-8 sequences" in warned[0]
    assert "of its bytes); guessing from its bytes, it is TIS-620: iconv -f TIS-620 -t UTF-8 " in warned[0]
    assert "fine.txt" not in warned[0]
    rc, _, err = run_cli(capsys, *base_args(bpe_dir, tmp_path / "t", tmp_path / "c", "--strict"))
    assert rc == 2 and "--strict refuses such shards" in err and "legacy.txt" in err  # reused pieces too


def test_a_cp1252_shard_gets_that_guess_and_utf8_text_no_warning(capsys, tmp_path, bpe_dir):
    _corpus(tmp_path / "w", "latin.txt", "café naïve “quoted” résumé, señor", "cp1252")
    rc, _, err = run_cli(capsys, *base_args(bpe_dir, tmp_path / "w", tmp_path / "c"))
    assert rc == 0 and "latin.txt" in err and "it is CP1252: iconv -f CP1252 -t UTF-8" in err
    _corpus(tmp_path / "u", "thai.txt", THAI, "utf-8")
    rc, _, err = run_cli(capsys, *base_args(bpe_dir, tmp_path / "u", tmp_path / "c2", "--strict"))
    assert rc == 0 and "likely not UTF-8" not in err
