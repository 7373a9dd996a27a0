"""A second stage at a longer --max_seq_length from the first stage's model (docs/long-context.md)."""

from __future__ import annotations

import json
from pathlib import Path

from preprocess.__main__ import main as preprocess_main
from tests.corpus import write_shards
from train.__main__ import main as train_main


def _stage(tok: Path, cache: Path, length: int, out: Path, *extra: str) -> int:
    return train_main(["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache),
                       "--max_seq_length", str(length), "--max_steps", "2", "--per_device_train_batch_size", "4",
                       "--save_strategy", "no", "--report_to", "none", "--output_dir", str(out), *extra])


def test_stage_two_repacks_the_cache_checks_positions_and_names_stage_one(capsys, tmp_path, bpe_dir):
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=200)
    build = ["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(text), "--datasets_cache_dir", str(cache),
             "--num_workers", "1", "--max_seq_length"]
    assert preprocess_main([*build, "32"]) == 0
    assert _stage(bpe_dir, cache, 32, tmp_path / "stage1", "--architecture", "roberta-tiny") == 0

    capsys.readouterr()
    assert preprocess_main([*build, "64"]) == 0
    assert "0 tokenized, 2 repacked" in capsys.readouterr().out  # the stored tokens re-cut, no text read again
    assert _stage(bpe_dir, cache, 64, tmp_path / "stage2", "--model_name_or_path", str(tmp_path / "stage1")) == 0
    assert "stage1 was trained at --max_seq_length 32; this run trains at 64" in capsys.readouterr().err

    record = json.loads((tmp_path / "stage2" / "provenance.json").read_text())
    first = record["started_from"]
    assert first["model"] == str((tmp_path / "stage1").resolve()) and first["step"] == 2
    assert first["provenance"]["data"][-1]["data"]["max_seq_length"] == 32
    assert record["data"][-1]["data"]["max_seq_length"] == 64
    assert "started_from" not in json.loads((tmp_path / "stage1" / "provenance.json").read_text())  # a fresh model
    # the card names the model it started from, not --architecture's default (roberta-base)
    card = (tmp_path / "stage2" / "README.md").read_text()
    assert f"| architecture | started from {tmp_path / 'stage1'}: roberta (RobertaForMaskedLM) |" in card
    assert "roberta-base" not in card

    # a third stage nests the second's record, which nests the first's: the chain reads back to stage 1
    assert _stage(bpe_dir, cache, 64, tmp_path / "stage3", "--model_name_or_path", str(tmp_path / "stage2")) == 0
    chain = json.loads((tmp_path / "stage3" / "provenance.json").read_text())["started_from"]
    assert chain["model"].endswith("stage2") and chain["provenance"]["started_from"]["model"].endswith("stage1")

    # past the model's position table: one line before any step, naming the limit
    assert preprocess_main([*build, "1024"]) == 0
    capsys.readouterr()
    assert _stage(bpe_dir, cache, 1024, tmp_path / "too_long", "--model_name_or_path", str(tmp_path / "stage2")) == 2
    err = capsys.readouterr().err
    assert "max_position_embeddings 514" in err and "--max_seq_length" in err
    # a pretrained model keeps its config: the fix offered is another model, not --config_name (which it ignores)
    assert "start from a model with max_position_embeddings >= 1026" in err and "--config_name" not in err
    assert not (tmp_path / "too_long" / "model.safetensors").exists()


def test_a_config_of_one_s_own_is_refused_beside_a_pretrained_model(capsys, tmp_path, bpe_dir):
    """from_pretrained reads the model's own config.json: a --config_name beside it would be dropped unsaid."""
    config = tmp_path / "long.json"
    config.write_text(json.dumps({"model_type": "roberta", "max_position_embeddings": 4098}))
    assert _stage(bpe_dir, tmp_path / "cache", 64, tmp_path / "out", "--model_name_or_path", str(tmp_path / "stage1"),
                  "--config_name", str(config)) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert "--config_name" in err and "--model_name_or_path" in err and "drop --config_name" in err
