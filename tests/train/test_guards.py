"""The train commands refuse what can only be a mistake, and every fix they print works when pasted.

Through the entry points (mlm-train, run_mlm.py, make train, a shell), as a
user meets them: a stale cache checked by default, the printed rebuild
command run from another directory, training text reused as validation text,
runs that would be overwritten or overrun, old flags, and a fast --help.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess.__main__ import main as preprocess_main
from run_mlm import main as run_mlm_main
from tests.corpus import make_lines, write_shards
from train.__main__ import main as train_main

ROOT = Path(__file__).parents[2]
HOUR_AGO_NS = 3600 * 10**9


def train_args(tok: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    """mlm-train as the README's `make train` runs it: no --train_dir, the cache's manifest knows the text."""
    return ["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache), "--max_seq_length", "32",
            "--architecture", "roberta-tiny", "--output_dir", str(out), "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--report_to", "none", "--disable_tqdm", "true", *extra]


def preprocess(tok: Path, cache: Path, *flags: str) -> None:
    assert preprocess_main(["--tokenizer_name_or_path", str(tok), "--datasets_cache_dir", str(cache),
                            "--max_seq_length", "32", "--num_workers", "1", *flags]) == 0


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def age(d: Path) -> None:
    """Every file of ``d`` last written an hour ago: older than any manifest, as text usually is."""
    for p in d.rglob("*"):
        if p.is_file():
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_AGO_NS))


def same_size_edit(p: Path) -> None:
    """Swap two bytes of ``p`` and put its mtime back: a change no stat can see."""
    st, data = p.stat(), bytearray(p.read_bytes())
    data[0], data[1] = data[1], data[0]
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


# --- 1. the cache is compared with its text by default ---------------------------------------------------------

def test_a_stale_cache_is_refused_by_default_without_train_dir(capsys, tmp_path, bpe_dir):
    text, cache, out = tmp_path / "text", tmp_path / "cache", tmp_path / "out"
    write_shards(text, n_shards=3, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    (text / "shard_009.txt").write_text("a new shard\n")
    edited = text / "shard_001.txt"
    edited.write_text(edited.read_text() + "one more line\n")
    capsys.readouterr()
    assert train_main(train_args(bpe_dir, cache, out)) == 2
    err = errors(capsys)
    assert len(err) == 1 and f"{cache / 'train'} is stale against {text}" in err[0]
    assert "1 changed (shard_001.txt), 1 added (shard_009.txt), 2 unchanged" in err[0]
    assert not out.exists()


def test_the_stat_pass_trusts_only_what_it_can_vouch_for(capsys, tmp_path, bpe_dir):
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=60)
    age(text)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    same_size_edit(text / "shard_000.txt")
    capsys.readouterr()
    # hashing finds the edit; the stat pass, by design, takes a file of the recorded size and mtime as unchanged
    assert train_main(train_args(bpe_dir, cache, tmp_path / "o1", "--input_check", "hash")) == 2
    assert "1 changed (shard_000.txt)" in errors(capsys)[0]
    assert train_main(train_args(bpe_dir, cache, tmp_path / "o2")) == 0
    # a file written in the same moment as its scan (here: just before preprocessing) is hashed even so
    fresh, cache2 = tmp_path / "fresh", tmp_path / "cache2"
    write_shards(fresh, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache2, "--train_dir", str(fresh))
    same_size_edit(fresh / "shard_001.txt")
    capsys.readouterr()
    assert train_main(train_args(bpe_dir, cache2, tmp_path / "o3")) == 2
    assert "1 changed (shard_001.txt)" in errors(capsys)[0]


def test_text_out_of_reach_is_a_note_and_training_goes_on(capsys, tmp_path, bpe_dir):
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    text.rename(tmp_path / "elsewhere")  # a GPU node without the text mounted
    capsys.readouterr()
    assert train_main(train_args(bpe_dir, cache, tmp_path / "out")) == 0
    err = capsys.readouterr().err
    assert f"note: {cache / 'train'} was not compared with its text: {text} (recorded in its manifest) is not reachable" in err
    assert train_main(train_args(bpe_dir, cache, tmp_path / "out2", "--input_check", "off")) == 0
    assert "note: --input_check off: the cache was not compared with its text" in capsys.readouterr().err


def test_make_train_on_a_stale_cache_is_one_line_naming_the_shard_and_the_fix(tmp_path, bpe_dir):
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    edited = text / "shard_000.txt"
    edited.write_text(edited.read_text() + "edited\n")
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "train", f"VENV={sys.prefix}", f"TOKENIZER={bpe_dir}",
                        f"CACHE_DIR={cache}", "MAX_SEQ_LENGTH=32", "ARCHITECTURE=roberta-tiny",
                        f"OUTPUT_DIR={tmp_path / 'out'}", "ARGS=--max_steps 1 --report_to none"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "1 changed (shard_000.txt)" in err[0] and "--train_dir " + str(text) in err[0]


# --- 2. the printed rebuild command works when pasted from anywhere ---------------------------------------------

def _txt(root: Path) -> list[str]:
    write_shards(root / "text", n_shards=3, lines_per_shard=60)
    write_shards(root / "eval", n_shards=1, lines_per_shard=40, seed=3)
    return ["--train_dir", str(root / "text"), "--eval_dir", str(root / "eval")]


def _nested(root: Path) -> list[str]:
    write_shards(root / "text" / "a", n_shards=2, lines_per_shard=40)
    write_shards(root / "text" / "b" / "c", n_shards=2, lines_per_shard=40, seed=2)
    write_shards(root / "eval" / "x", n_shards=1, lines_per_shard=40, seed=3)
    return ["--train_dir", str(root / "text"), "--eval_dir", str(root / "eval"), "--recursive"]


def _parquet(root: Path) -> list[str]:
    (root / "text").mkdir()
    for k in range(3):
        pq.write_table(pa.table({"content": make_lines(80, seed=k), "id": list(range(80))}),
                       root / "text" / f"part_{k}.parquet")
    return ["--train_dir", str(root / "text"), "--ext", "parquet", "--text_column", "content",
            "--validation_split_percentage", "20", "--validation_split_seed", "7"]


def _two_dirs(root: Path) -> list[str]:
    write_shards(root / "news", n_shards=2, lines_per_shard=40)
    write_shards(root / "wiki", n_shards=2, lines_per_shard=40, seed=4)
    write_shards(root / "eval", n_shards=1, lines_per_shard=40, seed=3)
    return ["--train_dir", str(root / "news"), "--train_dir", str(root / "wiki"), "--eval_dir", str(root / "eval")]


def _edit_one(root: Path) -> None:
    first = sorted(p for p in root.rglob("*") if p.is_file() and "eval" not in p.parts)[0]
    if first.suffix == ".parquet":
        pq.write_table(pa.table({"content": make_lines(81, seed=9), "id": list(range(81))}), first)
    else:
        first.write_text(first.read_text() + "an edited line\n")


@pytest.mark.parametrize("corpus", [_txt, _nested, _parquet, _two_dirs], ids=["txt", "recursive", "parquet", "two_dirs"])
def test_the_printed_rebuild_pasted_in_another_dir_rebuilds_the_cache_the_run_needs(capsys, tmp_path, bpe_dir, corpus):
    data = tmp_path / "data"
    data.mkdir()
    flags = corpus(data)
    cache = tmp_path / "cache"
    preprocess(bpe_dir, cache, *flags, "--task_size_mb", "0.01")
    params = {s: json.loads((cache / s / "manifest.json").read_text())["parameters"] for s in ("train", "validation")}
    _edit_one(data)
    capsys.readouterr()
    args = train_args(bpe_dir, cache, tmp_path / "out")
    assert train_main(args) == 2
    (err,) = errors(capsys)
    command = err.split("rebuild it (from any directory): ", 1)[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(["bash", "-c", command], cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert " 0 tokenized" not in r.stdout and "reused" in r.stdout  # incremental: the other pieces were kept
    manifests = {s: json.loads((cache / s / "manifest.json").read_text()) for s in ("train", "validation")}
    assert {s: m["parameters"] for s, m in manifests.items()} == params  # rebuilt as it was built
    train, validation = manifests["train"], manifests["validation"]
    assert validation["totals"]["lines"] < train["totals"]["lines"]  # never a copy of the training text
    assert not {s["digest"] for s in train["shards"]} & {s["digest"] for s in validation["shards"]} or \
        validation["parameters"].get("validation_split")
    assert train_main(args) == 0


def test_a_rebuild_for_another_tokenizer_or_block_size_is_complete(capsys, tmp_path, bpe_dir, wordpiece_dir):
    data = tmp_path / "data"
    data.mkdir()
    cache = tmp_path / "cache"
    preprocess(bpe_dir, cache, *_parquet(data))
    capsys.readouterr()
    for k, (tok, extra) in enumerate(((wordpiece_dir, []), (bpe_dir, ["--max_seq_length", "48"]))):
        args = train_args(tok, cache, tmp_path / f"out{k}", *extra)
        assert train_main(args) == 2
        (err,) = errors(capsys)
        command = err.split("to rebuild the cache (from any directory): ", 1)[1]
        for flag in ("--ext parquet", "--text_column content", "--validation_split_percentage 20",
                     "--validation_split_seed 7", f"--tokenizer_name_or_path {tok}"):
            assert flag in command
        assert "--eval_dir" not in command
        r = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert train_main(args) == 0


# --- 3. validation text that is training text ------------------------------------------------------------------

def test_eval_dir_that_is_or_shares_the_train_dir_is_refused(capsys, tmp_path, bpe_dir):
    text = tmp_path / "text"
    write_shards(text, n_shards=2, lines_per_shard=30)
    write_shards(text / "held", n_shards=1, lines_per_shard=30, seed=5)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "a.txt").symlink_to(text / "shard_000.txt")
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(text / "shard_001.txt", hard / "b.txt")
    cases = [([str(text), str(text)], "is --train_dir"), ([str(text), str(text / "held"), "--recursive"], "is inside"),
             ([str(text), str(linked)], "files are both in --train_dir and in --eval_dir"),
             ([str(text), str(hard), "--strict"], "files are both in --train_dir and in --eval_dir")]
    for (train, ev, *more), said in cases:
        cache = tmp_path / f"cache{len(more)}{said[:3]}"
        capsys.readouterr()
        assert preprocess_main(["--tokenizer_name_or_path", str(bpe_dir), "--datasets_cache_dir", str(cache),
                                "--train_dir", train, "--eval_dir", ev, *more]) == 2
        err = errors(capsys)
        assert len(err) == 1 and said in err[0] and "evaluated on text it trains on" in err[0]
        assert not (cache / "validation" / "manifest.json").exists()
    # mlm-train given both flags refuses as well, before any check of the cache
    assert train_main([*train_args(bpe_dir, tmp_path / "none", tmp_path / "out"), "--train_dir", str(text),
                       "--eval_dir", str(text)]) == 2
    assert "is --train_dir" in errors(capsys)[0]
    # and given --eval_dir alone, against the text its cache was built from
    cache = tmp_path / "built"
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    capsys.readouterr()
    assert train_main([*train_args(bpe_dir, cache, tmp_path / "out"), "--eval_dir", str(text)]) == 2
    assert "is --train_dir" in errors(capsys)[0]


def test_validation_shards_identical_to_training_shards_are_named(capsys, tmp_path, bpe_dir):
    text, copy, cache = tmp_path / "text", tmp_path / "copy", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=30)
    shutil.copytree(text, copy)  # the same files under another name: no dir or link ties them
    preprocess(bpe_dir, cache, "--train_dir", str(text), "--eval_dir", str(copy))
    capsys.readouterr()
    assert train_main(train_args(bpe_dir, cache, tmp_path / "out")) == 0
    assert "warning: 2 of the 2 validation shards are byte-identical to training shards" in capsys.readouterr().err


# --- 4. runs are never overwritten or overrun ----------------------------------------------------------------

def test_a_finished_run_is_neither_overrun_nor_overwritten(capsys, tmp_path, bpe_dir):
    text, cache, out = tmp_path / "text", tmp_path / "cache", tmp_path / "out"
    write_shards(text, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    args = [a if a != "1" else "2" for a in train_args(bpe_dir, cache, out)] + ["--save_steps", "1"]
    assert train_main(args) == 0
    model = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    # the same command resumed: nothing to do, nothing written, and no tied-weights "missing keys" warning
    assert train_main([*args, "--resume_from_checkpoint", "latest"]) == 0
    err = capsys.readouterr().err
    assert "finished at step 2" in err and "nothing to do" in err and not (out / "checkpoint-3").exists()
    assert (out / "model.safetensors").read_bytes() == model
    # killed after its last checkpoint, before the final save: that checkpoint becomes the model, no 3rd step
    (out / "trainer_state.json").unlink()
    (out / "model.safetensors").unlink()
    assert train_main([*args, "--resume_from_checkpoint", "latest"]) == 0
    err = capsys.readouterr().err
    assert "checkpoint-2 is at step 2, this run's last" in err and "missing keys" not in err
    assert not (out / "checkpoint-3").exists()
    assert (out / "model.safetensors").read_bytes() == (out / "checkpoint-2" / "model.safetensors").read_bytes()
    # resumed to go further: trains steps 3-4, and the Trainer's tied-weights warning is not shown
    longer = [a if a != "2" else "4" for a in args]
    assert train_main([*longer, "--resume_from_checkpoint", "latest"]) == 0
    err = capsys.readouterr().err
    assert (out / "checkpoint-4").is_dir() and "missing keys" not in err


def test_a_checkpoint_whose_weights_were_deleted_is_skipped_by_latest_and_named(capsys, tmp_path, bpe_dir):
    """A checkpoint's weights deleted by hand (to save space): ``latest`` picked it, and the Trainer failed
    after building the model; mlm-inspect run called it complete. Now ``latest`` takes the newest one that
    can be resumed from, with a note; inspect says why; nothing of the user's is deleted."""
    from preprocess.inspect_cache import main as inspect_main

    text, cache, out = tmp_path / "text", tmp_path / "cache", tmp_path / "out"
    write_shards(text, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    args = [a if a != "1" else "2" for a in train_args(bpe_dir, cache, out)] + ["--save_steps", "1"]
    assert train_main(args) == 0
    for name in ("trainer_state.json", "model.safetensors"):  # as if killed before the final save
        (out / name).unlink()
    (out / "checkpoint-2" / "model.safetensors").unlink()
    capsys.readouterr()
    assert inspect_main(["run", str(out), "--json"]) == 1  # not finished
    summary = json.loads(capsys.readouterr().out)
    newest = summary["checkpoints"][-1]
    assert newest["name"] == "checkpoint-2" and not newest["complete"] and "no model weights" in newest["why"]
    assert summary["last_step"] == 1 and "--resume_from_checkpoint latest" in summary["resume"]["command"]
    longer = [a if a != "2" else "3" for a in args]
    assert train_main([*longer, "--resume_from_checkpoint", "latest"]) == 0
    err = capsys.readouterr().err
    assert f"skipping {out / 'checkpoint-2'}: no model weights" in err
    assert (out / "checkpoint-3" / "model.safetensors").is_file() and (out / "model.safetensors").is_file()
    # none left to resume from: one error that says so, and nothing deleted
    for ckpt in out.glob("checkpoint-*"):
        (ckpt / "model.safetensors").unlink(missing_ok=True)
    kept = sorted(p.name for p in out.iterdir())
    assert train_main([*longer, "--resume_from_checkpoint", "latest"]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "no checkpoint in --output_dir" in err[0] and "--overwrite_output_dir" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == kept


def test_a_finished_model_without_checkpoints_is_refused_unless_overwrite(capsys, tmp_path, bpe_dir):
    text, cache, out = tmp_path / "text", tmp_path / "cache", tmp_path / "out"
    write_shards(text, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    args = train_args(bpe_dir, cache, out, "--save_strategy", "no")
    assert train_main(args) == 0
    model = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert train_main(args) == 2
    err = errors(capsys)
    assert len(err) == 1 and "holds a finished model (step 1)" in err[0] and "--overwrite_output_dir" in err[0]
    assert (out / "model.safetensors").read_bytes() == model
    assert train_main([*args, "--resume_from_checkpoint", "latest"]) == 2
    assert "holds no checkpoint-<step> dir (it holds a finished model" in errors(capsys)[0]
    # with checkpoints too: --overwrite_output_dir starts afresh and removes them, so `latest` is never the old run's
    with_ckpt = train_args(bpe_dir, cache, tmp_path / "out2", "--save_steps", "1")
    assert train_main(with_ckpt) == 0
    assert train_main([*with_ckpt, "--overwrite_output_dir", "--save_strategy", "no"]) == 0
    assert "deleted its 1 checkpoint dirs" in capsys.readouterr().err
    assert not list((tmp_path / "out2").glob("checkpoint-*"))


def _interrupt(tmp_path: Path, args: list[str], when: str) -> str:
    """mlm-train in a process of its own, Ctrl-C'd once ``when`` holds: its stderr."""
    # A shell's background job ignores SIGINT, and so would the child (Python leaves an ignored SIGINT ignored):
    # the child gets Ctrl-C's default, as in a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "train", *args], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if when in line or (when == "checkpoint" and list(Path(args[args.index("--output_dir") + 1]).glob(
                "checkpoint-*/trainer_state.json"))):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[1]
    return "".join(seen) + rest


def test_the_interrupt_message_names_the_checkpoint_or_says_there_is_none(tmp_path, bpe_dir):
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    out = tmp_path / "out"
    args = train_args(bpe_dir, cache, out, "--max_steps", "100000", "--save_steps", "1", "--logging_steps", "1",
                      "--disable_tqdm", "false")
    err = _interrupt(tmp_path, args, "checkpoint")
    last = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    assert f"interrupted: stopped; the newest checkpoint is {last}" in err
    assert "--resume_from_checkpoint latest" in err
    err = _interrupt(tmp_path, train_args(bpe_dir, cache, tmp_path / "none", "--max_steps", "100000",
                                          "--save_strategy", "no"), "pad positions")
    assert f"no checkpoint was saved in --output_dir {tmp_path / 'none'}, so a rerun starts from the beginning" in err


# --- 5. old command lines -----------------------------------------------------------------------------------

def test_old_examples_flags_are_accepted(capsys, tmp_path, bpe_dir):
    text, ev = tmp_path / "text", tmp_path / "eval"
    write_shards(text, n_shards=2, lines_per_shard=40)
    write_shards(ev, n_shards=1, lines_per_shard=30, seed=2)
    out = tmp_path / "out"
    argv = ["--tokenizer_name_or_path", str(bpe_dir), "--train_dir", str(text), "--eval_dir", str(ev),
            "--datasets_cache_dir", str(tmp_path / "cache"), "--max_seq_length", "32", "--architecture",
            "roberta-tiny", "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "2",
            "--report_to", "none", "--mlm", "--no_cuda", "--overwrite_output_dir", "--save_strategy", "no"]
    for _ in range(2):  # the second run replaces the first's model: --overwrite_output_dir
        assert run_mlm_main(argv) == 0
    err = capsys.readouterr().err
    assert "note: --mlm: this tool always trains a masked language model" in err
    assert "note: --no_cuda is --use_cpu in transformers v5; mapped" in err
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 1
    from train.config import parse

    parsed = parse(["--tokenizer_name_or_path", "t", "--datasets_cache_dir", "c", "--no_cuda"], "mlm-train")
    assert parsed.training.use_cpu is True


# --- 6. fast and short ----------------------------------------------------------------------------------------

def _without_heavy_imports(code: str) -> subprocess.CompletedProcess:
    check = "; import sys; print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_help_and_flag_errors_come_before_torch_and_transformers_load():
    r = _without_heavy_imports("from train.__main__ import main; rc = main(['--help']); assert rc == 0")
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
    text = r.stdout
    assert text.startswith("usage: mlm-train") and "Train a masked language model" in text.split("\n\n")[1]
    flags = text[text.index("options:"):]
    assert flags.index("--tokenizer_name_or_path") < flags.index("--input_check") < flags.index("--learning_rate")
    resume_help = flags[flags.index("  --resume_from_checkpoint"):][:300]
    assert "latest" in resume_help
    r = _without_heavy_imports("from run_mlm import main; rc = main(['--tokenizer_name_or_path', 't', "
                               "'--datasets_cache_dir', 'c', '--learnig_rate', '1']); assert rc == 2")
    assert r.returncode == 0 and "HEAVY []" in r.stdout, r.stderr
    assert "error: unrecognized arguments: --learnig_rate; see run_mlm.py --help" in r.stderr
    r = _without_heavy_imports("from train.__main__ import main; rc = main(['--tokenizer_name_or_path', 't', "
                               "'--datasets_cache_dir', 'c', '--max_steps', 'ten']); assert rc == 2")
    assert "HEAVY []" in r.stdout and "--max_steps: invalid int value: 'ten'" in r.stderr


def test_the_flags_read_from_source_are_the_trainers_own():
    import dataclasses

    from transformers import TrainingArguments

    from train.flags import trainer_fields

    fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    assert {f.name for f in trainer_fields()} == fields


def test_resuming_another_runs_checkpoint_into_a_dir_holding_a_run_is_refused(capsys, tmp_path, bpe_dir):
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=2, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text))
    done, other = tmp_path / "done", tmp_path / "other"
    assert train_main(train_args(bpe_dir, cache, done, "--save_strategy", "no")) == 0
    assert train_main(train_args(bpe_dir, cache, other, "--save_steps", "1")) == 0
    model = (done / "model.safetensors").read_bytes()
    capsys.readouterr()
    args = [a if a != "1" else "3" for a in train_args(bpe_dir, cache, done)]
    assert train_main([*args, "--resume_from_checkpoint", str(other / "checkpoint-1")]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "holds another run (a finished model, step 1)" in err[0]
    assert (done / "model.safetensors").read_bytes() == model
    assert train_main([*args, "--resume_from_checkpoint", str(other / "checkpoint-1"), "--overwrite_output_dir"]) == 0


def test_the_rebuild_keeps_every_digit_and_an_unmounted_text_dir_is_a_note(capsys, tmp_path, bpe_dir):
    text, cache = tmp_path / "text", tmp_path / "cache"
    write_shards(text, n_shards=3, lines_per_shard=60)
    preprocess(bpe_dir, cache, "--train_dir", str(text), "--validation_split_percentage", "3.14159265",
               "--task_size_mb", "0.0123456789")
    edited = text / "shard_000.txt"
    edited.write_text(edited.read_text() + "edited\n")
    capsys.readouterr()
    assert train_main(train_args(bpe_dir, cache, tmp_path / "out")) == 2
    err = errors(capsys)[0]
    assert "--validation_split_percentage 3.14159265 " in err and "--task_size_mb 0.0123456789 " in err
    # the recorded dir is there but empty: a mount point with nothing mounted, not a corpus whose files all went
    for p in text.iterdir():
        p.rename(tmp_path / p.name)
    assert train_main(train_args(bpe_dir, cache, tmp_path / "out")) == 0
    assert f"{text} holds none of its 3 shards (a file system not mounted here?)" in capsys.readouterr().err


def test_a_config_file_with_flags_and_a_missing_flag_are_one_line_at_once():
    r = _without_heavy_imports("from train.__main__ import main; rc = main(['cfg.json', '--max_steps', '3']); "
                               "assert rc == 2")
    assert "HEAVY []" in r.stdout and "error: cfg.json is a config file, which replaces every flag" in r.stderr
    r = _without_heavy_imports("from train.__main__ import main; rc = main(['--max_steps', '3']); assert rc == 2")
    assert "HEAVY []" in r.stdout
    assert "required: --tokenizer_name_or_path, --datasets_cache_dir" in r.stderr


def test_a_tokenizer_of_other_text_is_refused_before_any_work(capsys, tmp_path, wordpiece_dir):
    thai = tmp_path / "georgian"  # a script the fixture's vocabulary (English and Thai) has never seen
    thai.mkdir()
    (thai / "a.txt").write_text("\n".join(["გამარჯობა მსოფლიო ენა"] * 200) + "\n", encoding="utf-8")
    cache = tmp_path / "cache"
    assert preprocess_main(["--tokenizer_name_or_path", str(wordpiece_dir), "--train_dir", str(thai),
                            "--datasets_cache_dir", str(cache), "--max_seq_length", "32"]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "encodes none of 200 sample lines (the corpus's first lines)" in err[0]
    assert not (cache / "train" / "manifest.json").exists()
