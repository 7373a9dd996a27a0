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
    <cache>/corpora.pending.json    {"corpora": [...], "command": "mlm-preprocess ..."}: only while the
                                    cache's first named build has not finished
    <cache>/corpora/<name>/train/   a split as common/format.py defines it
    <cache>/corpora/<name>/validation/
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from common.errors import UserError
from common.format import FormatError
from common.json_files import read_json, write_json_atomic

CORPORA_FILE = "corpora.json"
PENDING_FILE = "corpora.pending.json"  # a first named build's record until its corpora.json is written
CORPORA_DIR = "corpora"
# NAME=DIR: what comes before the first '=' is a name unless it holds a '/', so a path with an '=' in it
# (data/a=b, ./a=b) is a dir; the name is then checked against the rule, never taken for a dir.
_NAMED = re.compile(r"^([^=/]*)=(.*)$")
MAX_NAME = 64  # characters: the dir <cache>/corpora/<name> stays far below 255 bytes (Thai: 3 bytes a character)
NAME_RULE = (f"a corpus name is letters (of any script, with their marks), digits, '_' and '-', at most {MAX_NAME}, "
             "the first a letter or digit (it names a dir, <cache>/corpora/<name>, and the metric eval_<name>_loss)")


def _name_char(c: str, first: bool) -> bool:
    category = unicodedata.category(c)
    return category[0] == "L" or category == "Nd" or (not first and (category[0] == "M" or c in "_-"))


def is_corpus_name(name: str) -> bool:
    """Whether ``name`` follows ``NAME_RULE``, the one rule for names given as flags and read from corpora.json.

    Marks count with the letters they sit on: Thai vowel and tone marks
    (U+0E31, U+0E34-0E3A, U+0E47-0E4E) are category Mn, which neither
    ``str.isalnum`` nor ``\\w`` takes, so ข่าว would be refused without them.
    Nothing else is taken: no '.', space or '/' (a name is one path
    component, never ``..``), no leading '-' (it would read as a flag).
    """
    return 0 < len(name) <= MAX_NAME and all(_name_char(c, k == 0) for k, c in enumerate(name))


def _name_error(flag: str, entry: str, name: str) -> UserError:
    """``name`` broke the rule: say the rule, a name that keeps it, and how to give a dir of that name."""
    fix = "".join(c if _name_char(c, False) else "_" for c in name).strip("_-")[:MAX_NAME]
    rename = f"rename it (e.g. {fix})" if fix and is_corpus_name(fix) else "rename it"
    return UserError(f"{flag} {entry}: {name or 'an empty name'}: {NAME_RULE}; {rename}, or, for a dir of that "
                     f"name, write ./{entry}")


def parse_named(value: str | None, flag: str) -> dict[str, str] | None:
    """``{name: "dir[,dir...]"}`` from NAME=DIR entries, in the order given; None when no entry is named.

    A name that breaks the rule is a UserError saying the rule (``NAME_RULE``),
    not a dir that does not exist.
    """
    if not value:
        return None
    named: dict[str, list[str]] = {}
    unnamed: list[str] = []
    current = None
    for entry in (x.strip() for x in value.split(",")):
        if not entry:
            continue
        m = _NAMED.match(entry)
        if m is None and "=" in entry and not os.path.exists(entry):  # x/y=d: a dir that is not there, or a name?
            head = entry.split("=", 1)[0]
            raise UserError(f"{flag} {entry}: no such directory, nor a NAME=DIR entry ({head}: {NAME_RULE})")
        if m:
            current = unicodedata.normalize("NFC", m.group(1))  # one name, however its letters were typed
            if not is_corpus_name(current):
                raise _name_error(flag, entry, current)
            if not m.group(2):
                raise UserError(f"{flag} {entry}: no dir after {current}=; give the corpus's dir ({current}=DIR)")
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
    """The corpora the cache's last complete preprocess run named; None for a one-corpus cache.
    UserError, naming the file, for one that is not such a list (``corpora_problem``)."""
    path = Path(cache) / CORPORA_FILE
    if not path.exists():
        return None
    try:
        doc = read_json(path)
    except FormatError as e:
        doc = e
    problem = corpora_problem(doc)
    if problem:
        raise UserError(f"{path}: {problem}; it is written by mlm-preprocess, never by hand: rerun mlm-preprocess "
                        "with the --train_dir NAME=DIR entries (it rewrites the file)")
    return list(doc["corpora"])


def corpora_problem(doc: object) -> str | None:
    """What is wrong with the content of a ``corpora.json``, in words; None when it lists corpora."""
    if isinstance(doc, Exception):
        return f"unreadable ({doc})"
    if not isinstance(doc, dict) or not isinstance(doc.get("corpora"), list):
        return 'not {"corpora": [names]}'
    names = doc["corpora"]
    bad = [n for n in names if not (isinstance(n, str) and is_corpus_name(n))]
    if bad:
        return f"{bad[0]!r} is not a corpus name"
    twice = sorted({n for n in names if names.count(n) > 1})
    if not names or twice:
        return "lists no corpus" if not names else f"lists {', '.join(twice)} twice"
    return None


def write_corpora(cache: str | Path, names: list[str]) -> None:
    """The cache's list of corpora, the commit of a named run: then its first-build record goes. Not
    rewritten when it lists them already (a fresh cache on a read-only mount is usable as it is)."""
    path = Path(cache) / CORPORA_FILE
    try:
        same = read_json(path) == {"corpora": list(names)}
    except FormatError:
        same = False
    if not same:
        write_json_atomic(path, {"corpora": list(names)})
    if (Path(cache) / PENDING_FILE).exists():
        (Path(cache) / PENDING_FILE).unlink()


def write_pending(cache: str | Path, names: list[str], command: str) -> None:
    """Before a cache's first named build writes anything: which corpora it builds and the command that
    finishes it, so a build killed before its ``corpora.json`` is still known for what it is."""
    Path(cache).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(cache) / PENDING_FILE, {"corpora": list(names), "command": command})


def read_pending(cache: str | Path) -> dict | None:
    """``{"corpora": [...], "command": "..."}`` of a first named build that never finished; None if none."""
    path = Path(cache) / PENDING_FILE
    if (Path(cache) / CORPORA_FILE).exists() or not path.exists():
        return None
    try:
        d = read_json(path)
        return {"corpora": [str(n) for n in d["corpora"]], "command": str(d["command"])}
    except (FormatError, KeyError, TypeError):
        return read_pending_guess(cache)


def unfinished(cache: str | Path, instead: str = "") -> str | None:
    """Words for a cache whose first named build was interrupted (no ``corpora.json`` yet), ending with
    the command that finishes it (``instead``: another way, said before it); None for any other cache."""
    pending = read_pending(cache)
    if pending is None and not (Path(cache) / CORPORA_FILE).exists() and any(Path(cache, CORPORA_DIR).glob("*/*")):
        pending = read_pending_guess(cache)
    if pending is None:
        return None
    return (f"{cache} is a cache of named corpora ({', '.join(pending['corpora'])}) whose first build did not "
            f"finish (no {CORPORA_FILE} yet); {instead}finish it (from any directory): {pending['command']}")


def read_pending_guess(cache: str | Path) -> dict:
    """What an unfinished named cache without its first-build record (written by an older version) holds."""
    return {"corpora": sorted(p.name for p in (Path(cache) / CORPORA_DIR).glob("*") if p.is_dir()),
            "command": "mlm-preprocess with the same --train_dir NAME=DIR entries"}


def check_one_layout(cache: str | Path, named: bool) -> None:
    """Refuse to mix the two layouts in one cache dir: which data a run reads must never be a guess."""
    cache = Path(cache)
    if named and (cache / "train" / "manifest.json").exists():
        raise UserError(f"--datasets_cache_dir {cache} holds an unnamed corpus ({cache}/train); named corpora "
                        "(--train_dir NAME=DIR) go in another --datasets_cache_dir, or name none")
    if not named and (cache / CORPORA_FILE).exists():
        raise UserError(f"--datasets_cache_dir {cache} holds named corpora ({cache}/{CORPORA_FILE}); give "
                        "--train_dir as NAME=DIR entries, or use another --datasets_cache_dir")
    if not named:
        words = unfinished(cache, instead="an unnamed corpus goes in another --datasets_cache_dir; ")
        if words:
            raise UserError(f"--datasets_cache_dir {words}")
