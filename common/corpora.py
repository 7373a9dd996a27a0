"""Named corpora: several corpora in one cache dir, each a cache of its own, mixed at train time.

``--train_dir wiki=data/th_wiki --train_dir news=data/news`` (or one value,
``wiki=data/th_wiki,news=data/news``; ``NAME=a,b`` gives one corpus several
dirs: a comma-separated entry without a name belongs to the named one before
it). Each corpus is preprocessed into ``<cache>/corpora/<name>/`` exactly as
an unnamed corpus is into ``<cache>/`` (its own ``train/`` and
``validation/``, manifests, content hashes, incremental rebuild, slices and
Ray), so adding, removing or editing one corpus retokenizes nothing of the
others; ``<cache>/corpora.json`` lists the corpora the last complete
preprocess run named, which are those training reads. Unnamed dirs keep
the one-corpus layout, so every existing command and cache works unchanged.

    <cache>/corpora.json            {"corpora": ["news", "wiki"]}
    <cache>/corpora/<name>/train/   a split as common/format.py defines it
    <cache>/corpora/<name>/validation/
"""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import UserError
from common.format import FormatError
from common.json_files import read_json, write_json_atomic

CORPORA_FILE = "corpora.json"
CORPORA_DIR = "corpora"
_NAMED = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,63})=(.+)$")


def parse_named(value: str | None, flag: str) -> dict[str, str] | None:
    """``{name: "dir[,dir...]"}`` from NAME=DIR entries, in the order given; None when no entry is named."""
    if not value:
        return None
    named: dict[str, list[str]] = {}
    unnamed: list[str] = []
    current = None
    for entry in (x.strip() for x in value.split(",")):
        if not entry:
            continue
        m = _NAMED.match(entry)
        if m:
            current = m.group(1)
            if current in named:
                raise UserError(f"{flag}: the corpus name {current!r} is given twice; one NAME=DIR per corpus "
                                f"(several dirs: {current}=a,b)")
            named[current] = [m.group(2)]
        elif current is not None:
            named[current].append(entry)
        else:
            unnamed.append(entry)
    if not named:
        return None
    if unnamed:
        raise UserError(f"{flag}: {unnamed[0]} has no name while {next(iter(named))} has one; name every corpus "
                        f"(NAME=DIR), or none")
    return {name: ",".join(dirs) for name, dirs in named.items()}


def corpus_dir(cache: str | Path, name: str) -> Path:
    """Where corpus ``name`` is cached: a cache dir of its own."""
    return Path(cache) / CORPORA_DIR / name


def read_corpora(cache: str | Path) -> list[str] | None:
    """The corpora the cache's last complete preprocess run named; None for a one-corpus cache."""
    path = Path(cache) / CORPORA_FILE
    if not path.exists():
        return None
    try:
        names = read_json(path)["corpora"]
    except (FormatError, KeyError, TypeError) as e:
        raise UserError(f"{path}: unreadable ({e}); rerun mlm-preprocess with the --train_dir NAME=DIR entries "
                        "to rewrite it") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and _NAMED.match(f"{n}=x") for n in names):
        raise UserError(f"{path}: 'corpora' must be a list of names; rerun mlm-preprocess to rewrite it")
    return names


def write_corpora(cache: str | Path, names: list[str]) -> None:
    write_json_atomic(Path(cache) / CORPORA_FILE, {"corpora": list(names)})


def check_one_layout(cache: str | Path, named: bool) -> None:
    """Refuse to mix the two layouts in one cache dir: which data a run reads must never be a guess."""
    cache = Path(cache)
    if named and (cache / "train" / "manifest.json").exists():
        raise UserError(f"--datasets_cache_dir {cache} holds an unnamed corpus ({cache}/train); named corpora "
                        "(--train_dir NAME=DIR) go in another --datasets_cache_dir, or name none")
    if not named and (cache / CORPORA_FILE).exists():
        raise UserError(f"--datasets_cache_dir {cache} holds named corpora ({cache}/{CORPORA_FILE}); give "
                        "--train_dir as NAME=DIR entries, or use another --datasets_cache_dir")
