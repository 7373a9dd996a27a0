import json

import pytest

from common.format import FormatError
from common.manifest import BlocksInfo, FileInfo, Manifest, ShardInfo, load_manifest, write_manifest

TOKENIZER = {"type": "auto", "name_or_path": "/tok", "digest": "t", "dtype": "uint16", "vocab_size": 100,
             "special_ids": {"bos": 0, "eos": 2, "pad": 1, "unk": 3, "mask": None}, "separator": {"token": "x", "id": 5},
             "settings": {}}


def _manifest() -> Manifest:
    f = FileInfo("shards/k.tokens.npy", 128 + 20, "d1", "uint16", [10])
    b = BlocksInfo("bk", 8, 2, 1, [0, 0, 0, 2], FileInfo("blocks/bk.blocks.npy", 160, "d2", "int64", [2, 2]))
    s = ShardInfo("a.txt", 50, "dd", "k", 3, 10, 1, 0, [0, 3], {"tokens": f}, b)
    return Manifest("/in", dict(TOKENIZER), {"max_seq_length": 8}, [s])


def test_round_trip_and_totals(tmp_path):
    m = _manifest()
    write_manifest(tmp_path, m)
    back = load_manifest(tmp_path)
    assert back == m
    d = json.loads((tmp_path / "manifest.json").read_text())
    assert d["totals"]["tokens"] == 10 and d["totals"]["blocks"] == 2 and d["totals"]["lines_split"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left


def test_fingerprint_ignores_who_and_when_but_not_content():
    m = _manifest()
    other_time = Manifest(**{**m.__dict__, "created_by": {"created_at": "later"}})
    assert other_time.fingerprint() == m.fingerprint()
    other_params = Manifest(**{**m.__dict__, "parameters": {"max_seq_length": 16}})
    assert other_params.fingerprint() != m.fingerprint()


def test_wrong_version_or_missing_manifest_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="no manifest"):
        load_manifest(tmp_path)
    d = _manifest().to_dict()
    d["format_version"] = 999
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(FormatError, match="format_version 999"):
        load_manifest(tmp_path)
