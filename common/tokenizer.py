"""Load a tokenizer by ``--tokenizer_type`` and describe its identity for the manifest.

One table (``TOKENIZER_TYPES``) names every type, its class and what it can
do; every command goes through ``load_tokenizer``. This module imports
``common.tokenizer_types`` (and so transformers) only when it loads one of
its classes, and that module imports nothing from here. The identity (file digests + class +
settings) is part of every cache key, so changing any of them makes the
cache stale.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.format import FormatError, token_dtype
from common.hashing import file_digest, fingerprint
from common.json_files import read_json
from common.manifest import Separator, SpecialIds, TokenizerIdentity, TokenizerSource

# The files that define a tokenizer, directly in its dir. A model dir also
# holds weights, training state, metrics and checkpoints: none of them
# changes how text is tokenized, so none may make a cache stale.
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "vocab.txt", "vocab.json", "merges.txt"}
_TOKENIZER_SUFFIXES = (".model",)  # SentencePiece models: spiece.model, sentencepiece.bpe.model, ...
SEPARATOR_CANDIDATES = ("▁", "\n")  # the first one in the vocab is the line separator, else eos


class TokenizerError(Exception):
    """The tokenizer cannot be loaded or lacks what packing needs."""


@dataclass
class LoadedTokenizer:
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    identity: TokenizerIdentity

    @property
    def separator_id(self) -> int:
        return self.identity.separator.id


def _load_auto(path: Path, settings: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if path.is_file():  # a tokenizer.json (tokenizer_source refused any other file)
        if (path.parent / "tokenizer_config.json").is_file():  # the roles live there: load the pair
            return AutoTokenizer.from_pretrained(str(path.parent), local_files_only=True)
        return _with_roles_from_added_tokens(PreTrainedTokenizerFast(tokenizer_file=str(path)), path)
    if (path / "vocab.txt").is_file() and not any((path / n).is_file() for n in _NAMES_A_CLASS):
        return _bare_wordpiece(path / "vocab.txt")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


# Files from which AutoTokenizer learns which class reads a dir; without any of them a lone vocab.txt
# failed with "You need to have sentencepiece or tiktoken installed" (they were).
_NAMES_A_CLASS = ("tokenizer.json", "tokenizer_config.json", "config.json")
TRAINING_FILE = "training.json"  # beside a tokenizer mlm-train-tokenizer made: what it was trained from

_WORDPIECE_ROLES = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")  # BERT's names: unk, bos/eos, pad, mask


def _bare_wordpiece(vocab_file: Path) -> Any:
    """A dir holding a vocab.txt and nothing that names its class: the WordPiece vocabulary it is (one
    token a line, ids by line, ``##`` continuing a word), read by ``BertTokenizer``; TokenizerError
    saying what is missing where it is not one.

    Lowercased (and accents stripped, as BERT's uncased models do) only where that loses nothing: no
    entry other than a ``[ROLE]`` has a capital, nor a mark once decomposed (Thai vowel and tone marks
    are such marks), so every entry stays reachable: ``bert-base-uncased`` is read uncased, a cased or
    Thai vocabulary as written.
    """
    import unicodedata

    from transformers import BertTokenizer

    tokens = vocab_file.read_text(encoding="utf-8").splitlines()
    bad = next((k for k, t in enumerate(tokens) if not t or t != "".join(t.split())), None)
    if bad is not None:
        raise TokenizerError(f"{vocab_file}: line {bad + 1} ({tokens[bad]!r}) holds a space or is empty: not a "
                             "WordPiece vocabulary (one token a line); a dir with only a vocab.txt is read as one. "
                             "Save the tokenizer with save_pretrained and pass that dir")
    missing = [t for t in _WORDPIECE_ROLES if t not in set(tokens)]
    if missing:
        raise TokenizerError(f"{vocab_file}: no {', '.join(missing)} in this WordPiece vocabulary (a dir with only a "
                             f"vocab.txt is read as one, and needs {', '.join(_WORDPIECE_ROLES)}); add them, or "
                             "save the tokenizer with save_pretrained (tokenizer_config.json names its tokens)")
    words = [t for t in tokens if not (t.startswith("[") and t.endswith("]"))]
    cased = any(c.isupper() for t in words for c in t)
    marked = any(unicodedata.category(c).startswith("M") for t in words for c in unicodedata.normalize("NFD", t))
    return BertTokenizer.from_pretrained(str(vocab_file.parent), local_files_only=True, do_lower_case=not cased,
                                         strip_accents=not (cased or marked))


# Special-token roles by the names the common vocabularies give them: a bare tokenizer.json lists its
# added tokens but not which is which.
_ROLE_NAMES = {"bos_token": ("<s>", "[CLS]"), "eos_token": ("</s>", "[SEP]"), "pad_token": ("<pad>", "[PAD]"),
               "mask_token": ("<mask>", "[MASK]"), "unk_token": ("<unk>", "[UNK]")}


def _with_roles_from_added_tokens(tok: Any, path: Path) -> Any:
    """A bare tokenizer.json's special roles, read from its added tokens, or a TokenizerError naming what is missing."""
    added = {t.content for t in tok.backend_tokenizer.get_added_tokens_decoder().values()}
    roles = {role: next((n for n in names if n in added), None) for role, names in _ROLE_NAMES.items()}
    missing = [role for role, token in roles.items() if token is None and role != "unk_token"]
    if missing:
        raise TokenizerError(f"{path}: a bare tokenizer.json names no {', '.join(missing)} among its added tokens "
                             f"({', '.join(sorted(added)) or 'none'}); save the tokenizer with save_pretrained "
                             "(tokenizer_config.json says which token is which) and pass its dir")
    tok.add_special_tokens({role: token for role, token in roles.items() if token is not None})
    return tok


@dataclass(frozen=True)
class Flags:
    """The command-line names of a tokenizer's path and type, as its errors must say them."""

    path: str
    type: str


TRAIN_FLAGS = Flags("--tokenizer_name_or_path", "--tokenizer_type")  # mlm-preprocess, mlm-train


def _load_class(spec: str, flags: Flags) -> Callable[[Path, dict[str, Any]], Any]:
    """``module.path:ClassName``: any PreTrainedTokenizer subclass of the user's, via from_pretrained."""

    def load(path: Path, settings: dict[str, Any]) -> Any:
        import importlib

        from transformers import PreTrainedTokenizerBase

        module_name, _, class_name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise TokenizerError(f"{flags.type} {spec}: cannot import {class_name} from {module_name} ({e})") from e
        if not (isinstance(cls, type) and issubclass(cls, PreTrainedTokenizerBase)):
            raise TokenizerError(f"{flags.type} {spec}: {class_name} is not a transformers tokenizer class")
        return cls.from_pretrained(str(path), local_files_only=True)

    return load


@dataclass(frozen=True)
class TokenizerType:
    """One ``--tokenizer_type``: its name, the class the users' README calls it (also accepted as
    the type), and what it can do. Every class but ``AutoTokenizer`` is in common/tokenizer_types.py."""

    name: str
    class_name: str
    needs: tuple[str, ...]  # a dir of this type holds at least one file matching one of these
    trainable: bool = False  # mlm-train-tokenizer --type can make one
    takes_space_flag: bool = False  # the class itself turns spaces into <_> (add_space_token=...)

    def tokenizer_class(self) -> type:
        from common import tokenizer_types  # heavy (transformers): only when a tokenizer is really loaded

        return getattr(tokenizer_types, self.class_name)

    def load(self, path: Path, settings: dict[str, Any]) -> Any:
        if self.name == "auto":
            return _load_auto(path, settings)
        from common.tokenizer_types import load_from_dir

        kwargs = {"add_space_token": bool(settings.get("add_space_token"))} if self.takes_space_flag else {}
        return load_from_dir(self.tokenizer_class(), path, **kwargs)


# The one table every command goes through: aliases, trainable types and segmenters derive from it.
# ``needs``: transformers' AutoTokenizer loads a dir without any of these (a model dir holding only
# config.json and weights) as an empty tokenizer of a few special ids, which tokenizes every line to
# nothing; our classes read their model or vocabulary file (tokenizer_types.load_from_dir). A
# byte-level tokenizer (ByT5, CANINE) has only tokenizer_config.json, hence that name in auto's list.
_AUTO_NEEDS = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", "*.model")
TOKENIZER_TYPES: dict[str, TokenizerType] = {t.name: t for t in (
    TokenizerType("auto", "AutoTokenizer", _AUTO_NEEDS),
    TokenizerType("spm", "ThaiRobertaTokenizer", ("*.model",), trainable=True, takes_space_flag=True),
    TokenizerType("newmm", "ThaiWordsNewmmTokenizer", ("vocab.json",), trainable=True),
    TokenizerType("syllable", "ThaiWordsSyllableTokenizer", ("vocab.json",), trainable=True),
    TokenizerType("fake_sefr_cut", "FakeSefrCutTokenizer", ("vocab.json",)),
)}
TOKENIZER_ALIASES: dict[str, str] = {t.class_name: t.name for t in TOKENIZER_TYPES.values()}
TRAINABLE_TYPES = tuple(t.name for t in TOKENIZER_TYPES.values() if t.trainable)


def resolve_type(tokenizer_type: str, flags: Flags = TRAIN_FLAGS) -> str:
    if ":" in tokenizer_type:
        return tokenizer_type
    name = TOKENIZER_ALIASES.get(tokenizer_type, tokenizer_type)
    if name not in TOKENIZER_TYPES:
        valid = ", ".join(sorted([*TOKENIZER_TYPES, *TOKENIZER_ALIASES]))
        raise TokenizerError(
            f"unknown {flags.type} {tokenizer_type!r}; valid types: {valid}, or module.path:ClassName"
        )
    return name


def _loader(kind: str, flags: Flags) -> Callable[[Path, dict[str, Any]], Any]:
    return _load_class(kind, flags) if ":" in kind else TOKENIZER_TYPES[kind].load


def preprocess_space_token(identity: TokenizerSource) -> bool:
    """Whether preprocessing must turn spaces into <_> itself: only a plain Hugging Face
    tokenizer (``auto``) cannot; the other types do it, or segment spaces to <_>, themselves."""
    return identity.type == "auto" and bool(identity.settings.get("add_space_token"))


def tokenizer_files(path: Path) -> dict[str, str]:
    """Digest of every file that defines the tokenizer, by name relative to ``path``."""
    if path.is_file():  # a tokenizer.json, and the config beside it that the loader reads too
        beside = [path.parent / "tokenizer_config.json", path.parent / "special_tokens_map.json"]
        return {p.name: file_digest(p) for p in [path, *beside] if p.is_file()}
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and (p.name in _TOKENIZER_FILES or p.name.endswith(_TOKENIZER_SUFFIXES)))
    return {p.name: file_digest(p) for p in files}


def check_tokenizer_dir(path: Path, kind: str, flag_value: str, flags: Flags = TRAIN_FLAGS) -> None:
    """TokenizerError unless the dir ``path`` holds a file that a tokenizer of type ``kind`` is read from.

    A model dir saved without its tokenizer otherwise loads (``auto``) as a tokenizer of a few
    special ids, and preprocessing "succeeds" with no tokens at all. A ``module.path:ClassName``
    type reads files we do not know: not checked here (an empty tokenizer is still refused by the
    preprocess stage's probe, preprocess/encoder.py: ``ids_problem``).
    """
    if ":" in kind or not path.is_dir():
        return
    named = _class_named(path)
    of_type = TOKENIZER_ALIASES.get(named or "")
    if of_type not in (None, "auto", kind) and not (kind == "auto" and (path / "tokenizer.json").is_file()):
        # one of our classes, read by another type (or by AutoTokenizer, without a tokenizer.json twin): a
        # newmm vocabulary segmented by syllables loads, and gives a cache or a report of nonsense
        raise TokenizerError(f"{flags.path} {flag_value}: its tokenizer_config.json names {named}, a {flags.type} "
                             f"{of_type} tokenizer, not {kind}; pass {flags.type} {of_type}")
    needs = TOKENIZER_TYPES[kind].needs
    if any(next(path.glob(pattern), None) is not None for pattern in needs):
        return
    held = sorted(p.name for p in path.iterdir())
    found = ", ".join(held[:6]) + (f" and {len(held) - 6} more" if len(held) > 6 else "") if held else "nothing"
    fits = [t.name for t in TOKENIZER_TYPES.values()
            if t.name != kind and any(next(path.glob(p), None) is not None for p in t.needs)]
    if fits:
        fix = f"its files suit {flags.type} {' or '.join(fits)}: is that the type meant?"
    elif any(n == "config.json" or n.endswith((".safetensors", ".bin")) for n in held):
        fix = ("it looks like a model dir saved without its tokenizer: pass the dir the tokenizer was saved to, "
               "or save it into this one (tok.save_pretrained(dir))")
    else:
        fix = "pass the dir a tokenizer was saved to (tok.save_pretrained(dir), or mlm-train-tokenizer)"
    raise TokenizerError(f"{flags.path} {flag_value}: no tokenizer files for {flags.type} {kind} "
                         f"(looked for {', '.join(needs)}; the dir holds {found}); {fix}")


def _class_named(path: Path) -> str | None:
    """The ``tokenizer_class`` a dir's tokenizer_config.json names, where it holds a readable one."""
    if not (path / "tokenizer_config.json").is_file():
        return None
    try:
        config = read_json(path / "tokenizer_config.json")
    except FormatError:  # unreadable, not JSON: the loader says so
        return None
    named = config.get("tokenizer_class") if isinstance(config, dict) else None
    return named if isinstance(named, str) else None


def _separator(tok: Any, eos: int) -> Separator:
    vocab = tok.get_vocab()
    for token in SEPARATOR_CANDIDATES:
        if token in vocab:
            return Separator(token, int(vocab[token]))
    return Separator(tok.convert_ids_to_tokens(eos), int(eos))


def tokenizer_source(name_or_path: str, tokenizer_type: str = "auto", settings: dict[str, Any] | None = None,
                     flags: Flags = TRAIN_FLAGS) -> TokenizerSource:
    """What defines the tokenizer, without loading it: type, file digests, settings, and their digest.

    Cheap (no transformers import), so a rerun can decide the cache is fresh
    without loading the tokenizer at all. ``flags``: the names its errors give the path and the type.
    """
    kind = resolve_type(tokenizer_type, flags)
    path = Path(name_or_path)
    if not path.exists():
        raise TokenizerError(
            f"{flags.path} {name_or_path}: no such file or directory "
            "(this tool never downloads; save the tokenizer locally with save_pretrained)"
        )
    if path.is_file() and kind == "auto" and path.suffix != ".json":
        raise TokenizerError(f"{flags.path} {name_or_path}: a tokenizer file must be a tokenizers 'tokenizer.json'; "
                             "or pass its directory")
    check_tokenizer_dir(path, kind, name_or_path, flags)
    files, settings = tokenizer_files(path), dict(settings or {})
    # The path is where it lives, not what it is: a copied tokenizer keeps its digest.
    digest = fingerprint({"type": kind, "files": files, "settings": settings})
    return TokenizerSource(kind, os.path.abspath(name_or_path), files, settings, digest)


def load_tokenizer(name_or_path: str, tokenizer_type: str = "auto", settings: dict[str, Any] | None = None,
                   flags: Flags = TRAIN_FLAGS) -> LoadedTokenizer:
    """Load a local tokenizer and describe it; TokenizerError with the reason if it cannot, naming ``flags``.

    Nothing is downloaded: ``name_or_path`` must be a local directory or file.
    """
    source = tokenizer_source(name_or_path, tokenizer_type, settings, flags)
    kind = source.type
    try:
        tok = _loader(kind, flags)(Path(name_or_path), source.settings)
    except TokenizerError:
        raise
    except Exception as e:  # any library error while loading: report it in one line
        msg = " ".join(str(e).split())[:400]  # the whole reason, on one line
        raise TokenizerError(
            f"{flags.path} {name_or_path}: cannot load as type {kind!r}: {type(e).__name__}: {msg}"
        ) from e
    # BERT-style vocabularies have [CLS]/[SEP] instead of <s>/</s>; they play
    # the same role around a block.
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    if bos is None or eos is None:
        raise TokenizerError(
            f"{name_or_path}: the tokenizer has neither bos/eos nor cls/sep tokens; blocks need both ends marked"
        )
    vocab_size = max(len(tok), max(tok.get_vocab().values()) + 1)
    identity = TokenizerIdentity(
        **vars(source),
        class_name=type(tok).__name__,
        vocab_size=int(vocab_size),
        dtype=token_dtype(vocab_size).name,
        special_ids=SpecialIds(bos, eos, tok.pad_token_id, tok.unk_token_id, tok.mask_token_id),
        separator=_separator(tok, eos),
    )
    return LoadedTokenizer(tok, identity)
