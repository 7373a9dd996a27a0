"""``mlm-train-tokenizer``'s output dir, written whole or not at all.

A run writes into ``<parent>/.<name>.partial-<host>.<pid>`` (beside ``--output_dir``: the same
filesystem, so the final rename is atomic) and renames it to ``--output_dir`` once complete; an error or
Ctrl-C deletes it (``writing``). A run killed outright (SIGKILL, the out-of-memory killer) deletes
nothing: the next run for the same ``--output_dir`` deletes such a leftover once its process is gone
(``remove_leftovers``). Only this host's: on a filesystem that several hosts share, another host's pid
says nothing here, and its run may still be training.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import UserError
from common.format import writer_id

PARTIAL = ".partial-"


def partial_dir(out: Path) -> Path:
    """Where this process writes the tokenizer for ``out`` before renaming it."""
    return out.parent / f".{out.name}{PARTIAL}{writer_id()}"


def _gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host. This process's own pid is gone too: it has not
    started writing, so a dir of that name is what an earlier process of the same pid left."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def leftovers(out: Path) -> list[tuple[Path, int]]:
    """The partial dirs for ``out`` whose run died, with its pid: this host's whose process is gone.

    ``<host>.<pid>`` names the run; a bare ``<pid>`` is what runs wrote before the host was in the name
    (taken as this host's)."""
    if not out.parent.is_dir():
        return []
    here = writer_id().rpartition(".")[0]
    name = re.compile(rf"\.{re.escape(out.name)}{re.escape(PARTIAL)}(?:(?P<host>.+)\.)?(?P<pid>\d+)")
    found = []
    for d in sorted(out.parent.iterdir()):
        m = name.fullmatch(d.name)
        if m and d.is_dir() and (m["host"] or here) == here and _gone(int(m["pid"])):
            found.append((d, int(m["pid"])))
    return found


def remove_leftovers(out: Path) -> list[tuple[Path, int]]:
    """Delete ``leftovers(out)``; returns them, for the caller to say so."""
    found = leftovers(out)
    for d, _ in found:
        shutil.rmtree(d, ignore_errors=True)
    return found


@contextmanager
def writing(out: Path) -> Iterator[Path]:
    """A new partial dir for ``out``: renamed to ``out`` when the block ends, deleted when it raises."""
    work = partial_dir(out)
    try:
        work.mkdir(parents=True)
    except OSError as e:  # the CLI checked the dir beforehand; what changed since, or a permission it could not see
        raise UserError(f"--output_dir {out}: cannot create {work} ({e.strerror}); give a dir you can write") from None
    try:
        yield work
        try:
            os.replace(work, out)  # atomic; replaces an empty dir only (rename(2)), never another run's tokenizer
        except OSError:
            if not (out.is_dir() and any(out.iterdir())):
                raise
            raise UserError(f"--output_dir {out} was filled by another run while this one trained; this run's "
                            "tokenizer was not kept: give another --output_dir, or delete it and rerun") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
