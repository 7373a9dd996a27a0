import json
from dataclasses import replace

import pytest

from common.format import FormatError
from common.manifest import (
    BlocksInfo,
    FileInfo,
    Manifest,
    Parameters,
    PieceInfo,
    Separator,
    ShardInfo,
    SpecialIds,
    TokenizerIdentity,
    load_manifest,
    write_manifest,
)

TOKENIZER = TokenizerIdentity("auto", "/tok", {"tokenizer.json": "f"}, {}, "t", "Cls", 100, "uint16",
                              SpecialIds(0, 2, 1, 3, None), Separator("x", 5), "tokenizers")
PARAMETERS = Parameters("txt", 8, "MemmapConcatFullSentenceTextDataset", False, {}, {})


def _manifest() -> Manifest:
    f = FileInfo("pieces/k.tokens.npy", 128 + 20, "d1", "uint16", [10])
    b = BlocksInfo("bk", 8, 2, 1, [0, 0, 0, 2], FileInfo("blocks/bk.blocks.npy", 160, "d2", "int64", [2, 2]))
    lines = FileInfo("pieces/k.lines.npy", 128 + 32, "d3", "int64", [4])
    shards = [ShardInfo("a.txt", 50, "dd", 2, 7, 1, 0, 2, [0, 2]), ShardInfo("b.txt", 9, "de", 1, 3, 0, 0, 0, [0, 1])]
    return Manifest("/in", TOKENIZER, PARAMETERS, shards, [PieceInfo("k", 2, 3, 10, {"tokens": f, "lines": lines}, b)])


def test_round_trip_and_totals(tmp_path):
    m = _manifest()
    write_manifest(tmp_path, m)
    back = load_manifest(tmp_path)
    assert back == m
    d = json.loads((tmp_path / "manifest.json").read_text())
    assert d["totals"]["tokens"] == 10 and d["totals"]["blocks"] == 2 and d["totals"]["lines_split"] == 1
    assert d["totals"]["shards"] == 2 and d["totals"]["pieces"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left


def test_fingerprint_ignores_who_and_when_but_not_content():
    m = _manifest()
    other_time = Manifest(**{**m.__dict__, "created_by": {"created_at": "later"}})
    assert other_time.fingerprint() == m.fingerprint()
    other_params = Manifest(**{**m.__dict__, "parameters": replace(PARAMETERS, max_seq_length=16)})
    assert other_params.fingerprint() != m.fingerprint()


def test_wrong_version_or_missing_manifest_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="no manifest"):
        load_manifest(tmp_path)
    d = _manifest().to_dict()
    d["format_version"] = 999
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(FormatError, match="format_version 999"):
        load_manifest(tmp_path)


def test_the_json_keys_and_their_order_are_the_format():
    """The typed identity writes the keys readers know, in the order they were written."""
    d = _manifest().to_dict()
    assert list(d["tokenizer"]) == ["type", "name_or_path", "files", "settings", "digest", "class", "vocab_size",
                                    "dtype", "special_ids", "separator", "encoder"]
    assert list(d["parameters"]) == ["ext", "max_seq_length", "datasets_type", "add_space_token", "cleaning", "packing",
                                     "recursive"]
    assert list(d) == ["format_version", "created_by", "input_dir", "tokenizer", "parameters", "shards", "pieces",
                       "totals", "stats"]
    assert Manifest.from_dict(d) == _manifest()


@pytest.mark.parametrize("edit", ["a piece holds more shards than listed", "lines are not the shards' sum"])
def test_pieces_that_disagree_with_their_shards_are_a_format_error(tmp_path, edit):
    d = _manifest().to_dict()
    if edit.startswith("a piece"):
        d["pieces"][0]["shards"] = 3
    else:
        d["shards"][0]["lines"] = 5
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(FormatError, match="malformed manifest"):
        load_manifest(tmp_path)
