"""The cache never loses the user's text and never serves what it does not claim to hold.

Each test drives a command's entry point (in-process ``main`` or a
subprocess) the way a user, a scheduler or a bad disk would.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import preprocess.encoder as encoder_module
import preprocess.executors as executors_module
from common import leases
from common.format import writer_id
from common.manifest import load_manifest
from preprocess.inspect_cache import main as inspect_main
from preprocess.writer import NpyStreamWriter
from tests.corpus import write_shards
from tests.preprocess.helpers import arrays, manifest, run_cli, shard_records
from tests.preprocess.helpers import base_args as _base_args

ROOT = Path(__file__).parents[2]


def base_args(*args: object) -> list[str]:
    """These tests follow single shards: each is a piece of its own unless a test sets --task_size_mb."""
    out = _base_args(*args)
    return out if "--task_size_mb" in out else [*out, "--task_size_mb", "0.001"]


def _one_error_line(err: str) -> None:
    """Exactly one line of stderr besides progress bars, and it is the error."""
    lines = [s for s in err.replace("\r", "\n").splitlines() if s.strip() and "%|" not in s]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err


def _temp_files(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if ".tmp-" in p.name]


def _subprocess(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kw.pop("env", {})}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, **kw)


def _built(capsys, tmp_path: Path, tok: Path) -> tuple[list[str], Path, list[Path]]:
    """A cache built from 2 shards: the preprocess flags, the cache dir, the shards."""
    train = tmp_path / "train"
    paths = write_shards(train, n_shards=2)
    cache = tmp_path / "cache"
    args = base_args(tok, train, cache)
    assert run_cli(capsys, *args)[0] == 0
    return args, cache, paths


# 1. cleanup deletes only the cache's own files


def test_an_input_dir_inside_the_cache_is_refused_and_the_text_survives(capsys, tmp_path, wordpiece_dir):
    d = tmp_path / "D"
    texts = write_shards(d / "train" / "shards", n_shards=2)
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, d / "train" / "shards", d))
    assert rc == 2 and "is inside --datasets_cache_dir" in err
    _one_error_line(err)
    assert all(p.is_file() for p in texts)
    # and the other way round: a cache inside the text dir
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, d / "train" / "shards", d / "train" / "shards" / "cache"))
    assert rc == 2 and "put the cache outside the text dir" in err
    assert all(p.is_file() for p in texts) and not (d / "train" / "shards" / "cache").exists()


def test_cleanup_keeps_foreign_files_and_never_follows_a_symlink(capsys, tmp_path, wordpiece_dir):
    args, cache, paths = _built(capsys, tmp_path, wordpiece_dir)
    old_piece = cache / "train" / manifest(cache)["pieces"][0]["files"]["tokens"]["path"]
    foreign = [cache / "train" / "pieces" / "my_notes.txt", cache / "train" / "blocks" / "keep.json",
               cache / "train" / "keep.npy"]
    for f in foreign:
        f.write_text("mine\n")
    paths[0].write_text(paths[0].read_text() + "one more line\n")  # the run now has pieces to remove
    assert run_cli(capsys, *args)[0] == 0
    assert all(f.read_text() == "mine\n" for f in foreign)
    assert len(list((cache / "train" / "pieces").glob("*.tokens.npy"))) == 2 and not old_piece.exists()

    # a .lock that links to a user's file: refused, the file untouched
    precious = tmp_path / "precious.txt"
    precious.write_text("mine\n")
    (cache / ".lock").unlink()
    (cache / ".lock").symlink_to(precious)
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2 and ".lock is a symlink" in err and precious.read_text() == "mine\n"
    (cache / ".lock").unlink()

    # pieces/ turned into a link to a dir of text: refused, and the text there untouched
    other = tmp_path / "other_text"
    kept = write_shards(other, n_shards=2, seed=3)
    shutil.rmtree(cache / "train" / "pieces")
    (cache / "train" / "pieces").symlink_to(other)
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2 and "is a symlink" in err
    _one_error_line(err)
    assert all(p.is_file() for p in kept) and sorted(other.iterdir()) == sorted(kept)


def test_a_rebuild_keeps_the_pieces_a_live_jobs_lease_names_and_removes_them_once_it_is_gone(capsys, tmp_path,
                                                                                              wordpiece_dir):
    """The lease rule (common/leases.py) in a second, with the lease a training job holds (``leases.hold``, as
    train/run.py takes it): a rebuild keeps, byte for byte, every file the job's manifest names; once the job
    ends, or was killed and left its lease behind, the next run removes them. The slow test in
    tests/train/test_preemption.py runs the same rule under a real training job."""
    args, cache, paths = _built(capsys, tmp_path, wordpiece_dir)
    split = cache / "train"
    old = load_manifest(split)
    files = {f.path: (split / f.path).read_bytes() for p in old.pieces for f in p.arrays()}
    with leases.hold(cache, {"train": old}) as held:
        assert held
        lease = json.loads(next((cache / leases.READERS_DIR).glob("*.json")).read_text())
        for p in paths:  # every piece changes
            p.write_text(p.read_text() + "one more line\n")
        rc, _, err = run_cli(capsys, *args)
        assert rc == 0
        assert f"kept 2 pieces the new manifest no longer names: a training job reads them (pid {os.getpid()} on" in err
        assert [f for f in files if not (split / f).is_file()] == []
        assert {f: (split / f).read_bytes() for f in files} == files  # what the job reads, as it was
        assert not {f.path for p in load_manifest(split).pieces for f in p.arrays()} & set(files)  # all new
    assert not list((cache / leases.READERS_DIR).glob("*.json"))  # the job ended: its lease is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a job killed with SIGKILL: its lease stays, naming a process that is gone
    (cache / leases.READERS_DIR / f"{writer_id().rpartition('.')[0]}.{dead.pid}.json").write_text(
        json.dumps({**lease, "pid": dead.pid}))
    rc, _, err = run_cli(capsys, *args)
    assert rc == 0 and "kept" not in err
    assert not [f for f in files if (split / f).exists()] and not list((cache / leases.READERS_DIR).glob("*.json"))


# 2. the digest recorded is the digest of the bytes tokenized


def _hook_mid_run(monkeypatch, action) -> None:
    """Run ``action`` once, while the encoder is on the line 'PAUSE here' (the run has hashed every
    shard and is reading them): a tokenizer that waits on a line while someone edits the file."""
    original = executors_module.set_worker_state
    done: list[bool] = []

    def set_state(*a, **kw):
        original(*a, **kw)
        encode = encoder_module.STATE["encode"]

        def paused(lines):
            if not done and any("PAUSE here" in s for s in lines):
                done.append(True)
                action()
            return encode(lines)

        encoder_module.STATE["encode"] = paused

    monkeypatch.setattr(executors_module, "set_worker_state", set_state)


def _paused_corpus(train: Path) -> tuple[list[Path], bytes]:
    paths = write_shards(train, n_shards=3, lines_per_shard=300)
    original = b"PAUSE here\n" + paths[1].read_bytes()
    paths[1].write_bytes(original)
    return paths, original


@pytest.mark.parametrize("edit", ["rewrite", "truncate"])
def test_a_shard_edited_while_read_is_never_stored_under_its_old_digest(capsys, monkeypatch, tmp_path,
                                                                         wordpiece_dir, edit):
    train = tmp_path / "train"
    paths, original = _paused_corpus(train)
    clean = tmp_path / "clean"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, clean, "--task_size_mb", "0.002"))[0] == 0

    def change() -> None:  # the later task ranges now hold other bytes (or none)
        half = len(original) // 2
        tail = original[half:].replace(b"the", b"xyz") if edit == "rewrite" else b""
        paths[1].write_bytes(original[:half] + tail)

    _hook_mid_run(monkeypatch, change)
    cache = tmp_path / "cache"
    args = base_args(wordpiece_dir, train, cache, "--task_size_mb", "0.002")
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2 and f"{paths[1]}: changed while this run read it" in err
    _one_error_line(err)
    assert not _temp_files(cache)
    paths[1].write_bytes(original)  # the old bytes are back: nothing stored may claim them
    monkeypatch.undo()
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0 and "1 shard reused, 2 tokenized" in out, err  # shard_000 was committed before the error
    assert arrays(cache) == arrays(clean) and shard_records(cache) == shard_records(clean)


def test_recorded_bytes_are_the_bytes_hashed(capsys, tmp_path, wordpiece_dir):
    from common.hashing import file_digest

    train = tmp_path / "train"
    paths = write_shards(train, n_shards=2)
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, cache, "--task_size_mb", "0.003"))[0] == 0
    for p, s in zip(paths, manifest(cache)["shards"]):
        assert s["bytes"] == p.stat().st_size and s["digest"] == file_digest(p)


# 3 and 4. damaged manifests and records


def _corrupt(kind: str, path: Path) -> None:
    good = json.loads(path.read_text())
    if kind == "random bytes":
        path.write_bytes(os.urandom(300))
    elif kind == "not utf-8":
        path.write_bytes(b'{"format_version": 1, "input_dir": "caf\xe9"}')
    elif kind == "list":
        path.write_text("[]")
    elif kind == "null":
        path.write_text("null")
    elif kind == "files not an object":
        good["pieces"][0]["files"] = 5
        path.write_text(json.dumps(good))
    elif kind == "path leaves the dir":
        good["pieces"][0]["files"]["tokens"]["path"] = "../../../../etc/passwd"
        path.write_text(json.dumps(good))
    elif kind == "wrong type":
        good["shards"][0]["tokens"] = "many"
        path.write_text(json.dumps(good))
    elif kind == "count disagrees with its array":
        good["pieces"][0]["blocks"]["blocks"] = 1
        path.write_text(json.dumps(good))
    elif kind == "special id outside the vocabulary":
        good["tokenizer"]["special_ids"]["bos"] = 2**70
        path.write_text(json.dumps(good))


CORRUPTIONS = ["random bytes", "not utf-8", "list", "null", "files not an object", "path leaves the dir", "wrong type",
               "count disagrees with its array", "special id outside the vocabulary"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_damaged_manifest_is_rebuilt_by_preprocess_and_one_line_elsewhere(capsys, tmp_path, wordpiece_dir, kind):
    args, cache, _ = _built(capsys, tmp_path, wordpiece_dir)
    good = arrays(cache)
    mpath = cache / "train" / "manifest.json"
    _corrupt(kind, mpath)
    for command in (["show", cache], ["show", cache / "train", "--json"], ["status", cache], ["verify", cache],
                    ["samples", cache]):
        rc = inspect_main([str(a) for a in command])
        err = capsys.readouterr().err
        assert rc == 2 and str(mpath) in err and "rerun preprocessing" in err, (command, err)
        _one_error_line(err)
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0 and "2 shards reused, 0 tokenized" in out, err  # every valid piece reused
    assert err.startswith("warning: ") and str(mpath) in err and "Traceback" not in err
    assert arrays(cache) == good
    _corrupt(kind, mpath)
    rc, out, err = run_cli(capsys, *args, "--overwrite_cache")
    assert rc == 0 and "2 tokenized" in out and arrays(cache) == good


@pytest.mark.parametrize("kind", ["random bytes", "list", "files not an object", "path leaves the dir",
                                  "count disagrees with its array"])
def test_a_damaged_piece_record_is_rebuilt_with_a_warning(capsys, tmp_path, wordpiece_dir, kind):
    args, cache, _ = _built(capsys, tmp_path, wordpiece_dir)
    good = arrays(cache)
    record = cache / "train" / "pieces" / f"{manifest(cache)['pieces'][1]['key']}.json"
    data = json.loads(record.read_text())
    if kind == "random bytes":
        record.write_bytes(os.urandom(100))
    elif kind == "list":
        record.write_text("[]")
    elif kind == "files not an object":
        record.write_text(json.dumps({**data, "files": 5}))
    elif kind == "count disagrees with its array":
        record.write_text(json.dumps({**data, "lines": 1}))
    else:
        data["files"]["tokens"]["path"] = "../../../outside.npy"
        record.write_text(json.dumps(data))
    (cache / "train" / "manifest.json").unlink()  # so the run must plan from the records
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0 and "1 shard reused, 1 tokenized" in out, err
    assert f"warning: {record}" in err and "Traceback" not in err
    assert arrays(cache) == good


@pytest.mark.parametrize("damage", ["truncated", "header", "deleted"])
def test_a_damaged_array_of_a_piece_the_manifest_lists_is_found_and_rebuilt(capsys, tmp_path, wordpiece_dir, damage):
    """A rerun takes the pieces its manifest lists without reading their records, but not without checking
    each array's header and size: a damaged one sends its piece back to the records' check, which
    rebuilds it, and the cache ends as it was."""
    args, cache, _ = _built(capsys, tmp_path, wordpiece_dir)
    good = arrays(cache)
    piece = manifest(cache)["pieces"][1]
    target = cache / "train" / (piece["blocks"]["file"] if damage == "header" else piece["files"]["tokens"])["path"]
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:-2])
    elif damage == "header":  # the same size, another shape in the header
        data = bytearray(target.read_bytes())
        at = data.index(b"'shape': (") + len(b"'shape': (")
        data[at] = ord("9") if data[at] != ord("9") else ord("8")
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    rc, out, err = run_cli(capsys, *args)
    rebuilt = "0 tokenized, 1 repacked" if damage == "header" else "1 tokenized"
    assert rc == 0 and rebuilt in out and f"warning: {cache / 'train'}" in err, (out, err)
    assert arrays(cache) == good and "Traceback" not in err
    rc, out, _ = run_cli(capsys, *args)
    assert rc == 0 and "cache is fresh" in out


def test_a_record_damaged_after_its_manifest_was_written_is_read_and_rebuilt(capsys, tmp_path, wordpiece_dir):
    """The manifest vouches for a piece's records only as they were when it was written: a record edited
    since (its mtime says so) is read again, found damaged, and its piece rebuilt, manifest or not."""
    args, cache, _ = _built(capsys, tmp_path, wordpiece_dir)
    good = arrays(cache)
    record = cache / "train" / "pieces" / f"{manifest(cache)['pieces'][1]['key']}.json"
    record.write_text("[]")
    later = (cache / "train" / "manifest.json").stat().st_mtime_ns + 1_000_000_000
    os.utime(record, ns=(later, later))
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0 and "1 shard reused, 1 tokenized" in out and f"warning: {record}" in err, (out, err)
    assert arrays(cache) == good and json.loads(record.read_text())["key"] == record.stem


def test_inspect_never_imports_a_module_only_the_manifest_names(capsys, tmp_path, wordpiece_dir):
    """A manifest is data: a type 'module:Class' in it must not run that module's code."""
    train = tmp_path / "train"
    write_shards(train, n_shards=1)
    cache = tmp_path / "cache"
    assert run_cli(capsys, *base_args(wordpiece_dir, train, cache))[0] == 0
    mods = tmp_path / "mods"
    mods.mkdir()
    marker = tmp_path / "imported"
    (mods / "planted.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Tok: pass\n")
    m = manifest(cache)
    m["tokenizer"]["type"] = "planted:Tok"
    (cache / "train" / "manifest.json").write_text(json.dumps(m))
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{mods}"}
    for command in (["samples", str(cache)], ["status", str(cache)], ["show", str(cache)], ["verify", str(cache)]):
        r = _subprocess([sys.executable, "-m", "preprocess.inspect_cache", *command], env=env)
        assert not marker.exists(), command
        assert "Traceback" not in r.stderr, r.stderr
    r = _subprocess([sys.executable, "-m", "preprocess.inspect_cache", "samples", str(cache)], env=env)
    assert r.returncode == 2 and "pass --tokenizer_type planted:Tok" in r.stderr


# 5. file names, file kinds, files vanishing, a full disk


def test_a_shard_name_that_is_not_utf8_is_one_line_before_any_work(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=1)
    with open(os.fsencode(train) + b"/caf\xe9.txt", "wb") as f:
        f.write(b"some text\n")
    cache = tmp_path / "cache"
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, train, cache))
    assert rc == 2 and "is not valid UTF-8" in err and "caf\\xe9.txt" in err
    _one_error_line(err)
    assert not (cache / "train").exists()


def test_a_fifo_or_device_named_like_a_shard_is_refused_not_read(tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    write_shards(train, n_shards=1)
    os.mkfifo(train / "pipe.txt")
    (train / "zero.txt").symlink_to("/dev/zero")
    r = _subprocess([sys.executable, "-m", "preprocess", *base_args(wordpiece_dir, train, tmp_path / "cache")])
    assert r.returncode == 2 and "not a regular file" in r.stderr
    _one_error_line(r.stderr)


def _rebuild_with(capsys, monkeypatch, tmp_path, wordpiece_dir, action) -> tuple[int, str, Path, dict]:
    """Build once, change every shard, rerun with ``action`` done mid-run; (rc, stderr, cache, old manifest)."""
    train = tmp_path / "train"
    paths, original = _paused_corpus(train)
    cache = tmp_path / "cache"
    args = base_args(wordpiece_dir, train, cache, "--task_size_mb", "0.002")
    assert run_cli(capsys, *args)[0] == 0
    before = (cache / "train" / "manifest.json").read_bytes()
    for p in paths:
        p.write_bytes(p.read_bytes() + b"one more line\n")
    action(paths)
    rc, _, err = run_cli(capsys, *args)
    monkeypatch.undo()
    assert (cache / "train" / "manifest.json").read_bytes() == before  # the previous manifest is intact
    assert not _temp_files(cache)
    return rc, err, cache, json.loads(before)


def test_a_shard_deleted_mid_run_is_one_line(capsys, monkeypatch, tmp_path, wordpiece_dir):
    rc, err, _, _ = _rebuild_with(capsys, monkeypatch, tmp_path, wordpiece_dir,
                                  lambda paths: _hook_mid_run(monkeypatch, paths[1].unlink))
    assert rc == 2 and "shard_001.txt" in err and "No such file" in err
    _one_error_line(err)


def test_a_full_disk_is_one_line_and_leaves_no_temp_file(capsys, monkeypatch, tmp_path, wordpiece_dir):
    calls = []
    original = NpyStreamWriter.append

    def append(self, arr):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.tmp))
        return original(self, arr)

    rc, err, _, _ = _rebuild_with(capsys, monkeypatch, tmp_path, wordpiece_dir,
                                  lambda paths: monkeypatch.setattr(NpyStreamWriter, "append", append))
    assert rc == 2 and "No space left on device" in err
    _one_error_line(err)


# 6. SIGTERM


def test_sigterm_cleans_up_releases_the_lock_and_exits_143(tmp_path, wordpiece_dir):
    import signal
    import time

    train = tmp_path / "train"
    write_shards(train, n_shards=8, lines_per_shard=3000)
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "preprocess", *base_args(wordpiece_dir, train, cache, "--task_size_mb", "0.05")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not list((cache / "train" / "pieces").glob("*.json")):
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err, err
    assert not _temp_files(cache) and not (cache / "train" / "manifest.json").exists()
    r = _subprocess(args)  # the lock was released: a rerun resumes
    assert r.returncode == 0 and " reused, " in r.stdout and "0 shards reused" not in r.stdout


# 7. a read-only cache


def _unshare_available() -> bool:
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(shutil.which("unshare") is None or not _unshare_available(),
                    reason="needs unshare to bind-mount the cache read-only")
def test_a_fresh_cache_on_a_read_only_filesystem_is_used_without_writing(capsys, tmp_path, bpe_dir):
    args, cache, paths = _built(capsys, tmp_path, bpe_dir)
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}

    def read_only(cmd: list[str]) -> subprocess.CompletedProcess:
        script = f"mount --bind -o ro {cache} {cache} && exec " + " ".join(f"'{a}'" for a in cmd)
        return _subprocess(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script])

    r = read_only([sys.executable, "-m", "preprocess", *args])
    assert r.returncode == 0 and "cache is fresh" in r.stdout, r.stderr
    # run_mlm.py preprocesses first, then trains (writing only to --output_dir)
    train_args = [a for a in args if a != "--num_workers" and a != "1"]
    r = read_only([sys.executable, str(ROOT / "run_mlm.py"), *train_args, "--architecture", "roberta-tiny",
                   "--max_steps", "1", "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path / "out"),
                   "--save_strategy", "no", "--report_to", "none"])
    assert r.returncode == 0 and "cache is fresh" in r.stdout, r.stderr[-2000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before
    # the same text and tokenizer at other paths (the cache copied to another machine): still fresh
    moved_text, moved_tok = tmp_path / "moved_text", tmp_path / "moved_tok"
    shutil.copytree(paths[0].parent, moved_text)
    shutil.copytree(bpe_dir, moved_tok)
    moved = [moved_tok if a == str(bpe_dir) else moved_text if a == str(paths[0].parent) else a for a in args]
    r = read_only([sys.executable, "-m", "preprocess", *moved])
    assert r.returncode == 0 and "cache is fresh" in r.stdout, r.stderr
    # a validation split asked for but never built: the message blames it, not train
    r = read_only([sys.executable, "-m", "preprocess", *args, "--eval_dir", str(moved_text)])
    assert r.returncode == 2 and "validation has no readable manifest" in r.stderr and "train" not in \
        r.stderr.split("not fresh:")[1].split(";")[0]
    paths[0].write_text("changed text\n")
    r = read_only([sys.executable, "-m", "preprocess", *args])
    assert r.returncode == 2 and "cannot be written" in r.stderr and "1 shard tokenized" in r.stderr
    _one_error_line(r.stderr)


# 8. damage found later


def test_verify_outputs_rebuilds_an_array_altered_at_the_same_size(capsys, tmp_path, wordpiece_dir):
    args, cache, _ = _built(capsys, tmp_path, wordpiece_dir)
    good = arrays(cache)
    tokens = cache / "train" / manifest(cache)["pieces"][0]["files"]["tokens"]["path"]
    data = bytearray(tokens.read_bytes())
    data[200] ^= 0xFF
    tokens.write_bytes(bytes(data))
    rc, out, _ = run_cli(capsys, *args)
    assert rc == 0 and "cache is fresh" in out  # a plain rerun checks sizes only (README says so)
    rc, out, err = run_cli(capsys, *args, "--verify_outputs")
    assert rc == 0 and "1 shard reused, 1 tokenized" in out and "content differs" in err
    assert arrays(cache) == good
    assert inspect_main(["verify", str(cache)]) == 0


# fault injection: kills at random moments


@pytest.mark.slow
def test_random_sigkills_and_sigterms_then_a_rerun_always_equal_a_clean_build(tmp_path, wordpiece_dir):
    import random
    import signal
    import time

    train = tmp_path / "train"
    write_shards(train, n_shards=6, lines_per_shard=4000)
    cli = [sys.executable, "-m", "preprocess"]

    def args(cache: Path) -> list[str]:
        a = base_args(wordpiece_dir, train, cache, "--task_size_mb", "0.1")
        a[a.index("--num_workers") + 1] = "2"
        return [*cli, *a]

    def identity(cache: Path) -> tuple[dict, dict]:
        m = manifest(cache)
        m.pop("created_by")
        return arrays(cache), m

    clean = tmp_path / "clean"
    t0 = time.perf_counter()
    assert _subprocess(args(clean)).returncode == 0
    build_seconds = time.perf_counter() - t0
    expected = identity(clean)
    rng = random.Random(8)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    signals = [signal.SIGKILL] * 10 + [signal.SIGTERM] * 5
    rng.shuffle(signals)
    cache = tmp_path / "cache"
    killed = []
    for trial, sig in enumerate(signals):
        if trial % 3 == 0:
            shutil.rmtree(cache, ignore_errors=True)  # a first build; otherwise a rebuild after a changed shard
        else:
            for p in rng.sample(sorted(train.iterdir()), 2):
                p.write_bytes(p.read_bytes() + f"trial {trial}\n".encode())
            clean_now = tmp_path / f"clean{trial}"
            assert _subprocess(args(clean_now)).returncode == 0
            expected = identity(clean_now)
            shutil.rmtree(clean_now)
        p = subprocess.Popen(args(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
        time.sleep(rng.uniform(0.3, build_seconds * (1 if trial % 3 == 0 else 0.6)))
        if p.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(p.pid, sig)  # the whole process tree dies at once: no cleanup at all
            else:
                p.send_signal(sig)  # the parent only, as Kubernetes does
        _, err = p.communicate(timeout=120)
        assert p.returncode in (0, -signal.SIGKILL, 143), (trial, p.returncode, err)
        killed += [p.returncode] if p.returncode else []
        if p.returncode == 143:
            assert "terminated (SIGTERM)" in err and not _temp_files(cache), err
        r = _subprocess(args(cache))
        assert r.returncode == 0, (trial, r.stderr)
        assert identity(cache) == expected, trial
        assert not _temp_files(cache), trial
    print(f"build {build_seconds:.1f} s; exits of the killed runs: {killed}")
    assert len(killed) >= 10 and 143 in killed  # most signals landed mid-run, not after the run ended


def test_a_tokenizer_edited_while_the_run_hashes_is_never_stored_under_its_old_digest(capsys, monkeypatch, tmp_path,
                                                                                       wordpiece_dir):
    tok = tmp_path / "tok"
    shutil.copytree(wordpiece_dir, tok)
    train = tmp_path / "train"
    write_shards(train, n_shards=2)
    original = encoder_module.load_tokenizer

    def edited_then_loaded(*args, **kwargs):  # the run has hashed the tokenizer and every shard by now
        cfg = tok / "tokenizer_config.json"
        cfg.write_text(cfg.read_text().replace("{", '{\n  "model_max_length": 77,', 1))
        return original(*args, **kwargs)

    monkeypatch.setattr(encoder_module, "load_tokenizer", edited_then_loaded)
    cache = tmp_path / "cache"
    rc, _, err = run_cli(capsys, *base_args(tok, train, cache))
    assert rc == 2 and "its files changed while this run read them" in err
    _one_error_line(err)
    assert not list(cache.rglob("*.npy")) and not (cache / "train" / "manifest.json").exists()


def _start_with_workers(tmp_path, tok) -> tuple[subprocess.Popen, list]:
    """A 2-worker run on one big task (so one worker is idle), started in its own process group;
    returns once both workers exist."""
    import time

    import psutil

    train = tmp_path / "train"
    write_shards(train, n_shards=1, lines_per_shard=60_000)
    args = base_args(tok, train, tmp_path / "cache", "--task_size_mb", "100")
    args[args.index("--num_workers") + 1] = "2"
    p = subprocess.Popen([sys.executable, "-m", "preprocess", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(psutil.Process(p.pid).children()) < 2:
        time.sleep(0.05)
    time.sleep(0.5)
    children = psutil.Process(p.pid).children()
    assert len(children) == 2 and p.poll() is None
    return p, children


def test_sigterm_to_the_process_group_with_an_idle_worker_ends_the_run(tmp_path, wordpiece_dir):
    import signal

    p, _ = _start_with_workers(tmp_path, wordpiece_dir)
    os.killpg(p.pid, signal.SIGTERM)  # as Slurm and `timeout` do: every process of the group
    _, err = p.communicate(timeout=60)  # multiprocess.Pool waited here forever on a lock the idle worker held
    assert p.returncode == 143 and "terminated (SIGTERM)" in err, err
    assert not _temp_files(tmp_path / "cache")


def test_a_worker_killed_mid_run_is_one_error_line(tmp_path, wordpiece_dir):
    import signal

    p, children = _start_with_workers(tmp_path, wordpiece_dir)
    os.kill(children[0].pid, signal.SIGKILL)  # the OOM killer's way
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "died with exit code -9 (killed: out of memory?)" in err, err
    _one_error_line(err)
    assert not _temp_files(tmp_path / "cache")


@pytest.mark.skipif(shutil.which("unshare") is None or not _unshare_available(),
                    reason="needs unshare to mount a small tmpfs")
def test_a_really_full_disk_leaves_no_temp_file_and_the_old_manifest(tmp_path, wordpiece_dir):
    """A 600 KB tmpfs: the close of a temp file fails too once the disk is full."""
    small, more = tmp_path / "small_text", tmp_path / "more_text"
    write_shards(small, n_shards=1, lines_per_shard=100)
    write_shards(more, n_shards=6, lines_per_shard=2000)
    cache = tmp_path / "cache"
    cache.mkdir()
    run = f"{sys.executable} -m preprocess --tokenizer_name_or_path {wordpiece_dir} --datasets_cache_dir {cache} " \
          "--num_workers 1 --max_seq_length 32 --train_dir"
    script = (f"mount -t tmpfs -o size=600k tmpfs {cache} && {run} {small} >/dev/null 2>&1 && "
              f"cp {cache}/train/manifest.json {tmp_path}/before.json && {run} {more} 2>{tmp_path}/err; "
              f"echo rc=$?; find {cache} -name '*.tmp-*'; cmp {cache}/train/manifest.json {tmp_path}/before.json "
              "&& echo manifest-intact")
    r = _subprocess(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script])
    err = (tmp_path / "err").read_text()
    assert r.stdout.splitlines() == ["rc=2", "manifest-intact"], (r.stdout, r.stderr, err)  # no temp file listed
    assert "No space left on device" in err and str(cache) in err
    _one_error_line(err)


@pytest.mark.parametrize("what, data", [
    ("gzip-compressed", gzip.compress(b"some text\n" * 50)),
    ("zstd-compressed", b"\x28\xb5\x2f\xfd" + bytes(range(200))),
    ("a Parquet file", b"PAR1" + b"\x15\x04\x15\x00\x15\x8c\x01\x2c" * 100),
    ("binary data (NUL bytes)", b"text\x00\x00\x01\x02" * 200),
    ("UTF-16 text", "สวัสดี\n".encode("utf-16")),
])
def test_a_file_that_is_not_text_is_refused_before_any_work(capsys, tmp_path, wordpiece_dir, what, data):
    train = tmp_path / "train"
    write_shards(train, n_shards=2)
    (train / "shard_001.txt").write_bytes(data)  # named like text
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, train, tmp_path / "cache"))
    assert rc == 2 and f"shard_001.txt: {what}, not text" in err
    _one_error_line(err)
    assert not (tmp_path / "cache" / "train" / "manifest.json").exists()


def test_a_flag_given_twice_is_never_silently_dropped(capsys, tmp_path, wordpiece_dir):
    from preprocess.inspect_cache import main as inspect_main

    a, b = tmp_path / "corpus" / "a", tmp_path / "corpus" / "b"
    write_shards(a, n_shards=1)
    write_shards(b, n_shards=1, seed=2)
    # an input dir given twice: both are read, as with a comma-separated list
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, a, tmp_path / "cache"), "--train_dir", str(b))
    assert rc == 0, err
    m = manifest(tmp_path / "cache")
    assert [s["path"] for s in m["shards"]] == ["a/shard_000.txt", "b/shard_000.txt"]
    assert m["input_dir"] == f"{a.resolve()},{b.resolve()}"
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, f"{a},{b}", tmp_path / "listed"))
    assert rc == 0 and arrays(tmp_path / "listed") == arrays(tmp_path / "cache")
    assert inspect_main(["status", str(tmp_path / "cache")]) == 0
    (b / "shard_000.txt").write_text("changed\n")
    assert inspect_main(["status", str(tmp_path / "cache")]) == 1
    assert "changed   b/shard_000.txt" in capsys.readouterr().out
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, f"{a},{a}", tmp_path / "twice"))
    assert rc == 2 and "the same dir" in err
    args = base_args(wordpiece_dir, a, tmp_path / "cache")
    rc, _, err = run_cli(capsys, *args, "--max_seq_length", "48")  # an override appended: it counts, and says so
    assert rc == 0 and "note: --max_seq_length is given 2 times; the last ('48') counts" in err
    assert manifest(tmp_path / "cache")["parameters"]["max_seq_length"] == 48


def test_text_that_starts_like_a_magic_number_is_still_text(capsys, tmp_path, wordpiece_dir):
    train = tmp_path / "train"
    train.mkdir()
    (train / "a.txt").write_text("BZh is a name\nPAR1 is the first paragraph\n")
    rc, _, err = run_cli(capsys, *base_args(wordpiece_dir, train, tmp_path / "cache"))
    assert rc == 0, err
    assert manifest(tmp_path / "cache")["totals"]["lines"] == 2


def test_sigkill_of_the_parent_alone_takes_its_workers_and_frees_the_cache(tmp_path, wordpiece_dir):
    import signal
    import time

    p, children = _start_with_workers(tmp_path, wordpiece_dir)
    os.kill(p.pid, signal.SIGKILL)  # the parent only: no cleanup, the workers are not told
    p.communicate(timeout=60)
    deadline = time.time() + 10
    while time.time() < deadline and any(c.is_running() and c.status() != "zombie" for c in children):
        time.sleep(0.05)
    assert not any(c.is_running() and c.status() != "zombie" for c in children)  # orphans held the lock
    args = base_args(wordpiece_dir, tmp_path / "train", tmp_path / "cache", "--task_size_mb", "100")
    r = _subprocess([sys.executable, "-m", "preprocess", *args])
    assert r.returncode == 0, r.stderr
    assert not _temp_files(tmp_path / "cache")
