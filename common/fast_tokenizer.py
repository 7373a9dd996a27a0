"""A ``tokenizers``-backed tokenizer dir, written and read without transformers.

What ``mlm-train-tokenizer --type bpe|wordpiece|unigram`` saves, and what
``AutoTokenizer`` (transformers 4 and 5) loads as ``PreTrainedTokenizerFast``:

    tokenizer.json          the ``tokenizers.Tokenizer``: model, normalizer, pre-tokenizer,
                            post-processor, decoder, added tokens (with their lstrip/rstrip)
    tokenizer_config.json   {"tokenizer_class": "PreTrainedTokenizerFast", each special role ->
                            its token, "clean_up_tokenization_spaces": false,
                            "model_max_length": 10**30 (no limit of the tokenizer's own)}

Why not ``save_pretrained``: importing transformers took 0.8 s of a 2.9 s bpe
run on a 5 MB sample (bench/tokenizer_train.py), and these two files are all
it wrote (tokenizer.json byte for byte; tests/common/test_fast_tokenizer.py
checks the config against transformers' own). ``PreTrainedTokenizerFast``
rather than v5's ``TokenizersBackend`` (the same class there) so a GPU node
on transformers 4 loads the dir too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.json_files import write_json_atomic

TOKENIZER_JSON, CONFIG_JSON = "tokenizer.json", "tokenizer_config.json"
FAST_CLASS = "PreTrainedTokenizerFast"
ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
NO_LENGTH_LIMIT = int(1e30)  # transformers' VERY_LARGE_INTEGER, what save_pretrained writes for "none"


class TokenizerDirError(Exception):
    """A dir mlm-train-tokenizer wrote (this module's, or common/word_level.py's) does not read back: which
    file, and what is missing or wrong, in one line."""


def read_part(path: Path, parse: Callable[[Path], Any]) -> Any:
    """``parse(path)``, any failure (missing, unreadable, not what ``parse`` reads) a TokenizerDirError."""
    try:
        return parse(path)
    except Exception as e:  # noqa: BLE001 - OSError, bad JSON, or tokenizers' own plain Exception
        raise TokenizerDirError(f"{path}: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e


def read_json_part(path: Path) -> Any:
    return read_part(path, lambda p: json.loads(p.read_text(encoding="utf-8")))


def write_fast_dir(tok: Any, out: Path, roles: dict[str, str]) -> None:
    """Save ``tok`` (a ``tokenizers.Tokenizer``) into ``out`` with each special role of ``roles``
    (``{"mask_token": "<mask>", ...}``, names from ``ROLES``). ``clean_up_tokenization_spaces=False``:
    decoding must give the text back, not BERT's ``" ."`` -> ``"."``."""
    unknown = sorted(set(roles) - set(ROLES))
    assert not unknown, unknown
    tok.save(str(out / TOKENIZER_JSON))
    config = {"tokenizer_class": FAST_CLASS, **roles, "clean_up_tokenization_spaces": False,
              "model_max_length": NO_LENGTH_LIMIT}
    write_json_atomic(out / CONFIG_JSON, dict(sorted(config.items())))


@dataclass(frozen=True)
class FastDir:
    """A tokenizers-backed dir as read back: the tokenizer, and each role's token and id."""

    tokenizer: Any  # tokenizers.Tokenizer
    roles: dict[str, tuple[str, int]]  # role -> (token, id)

    def role_id(self, role: str) -> int | None:
        return self.roles[role][1] if role in self.roles else None

    @property
    def special_ids(self) -> set[int]:
        """The role tokens' ids and every added token marked special: what transformers' ``all_special_ids``
        holds for such a dir."""
        added = self.tokenizer.get_added_tokens_decoder()
        return {i for _, i in self.roles.values()} | {i for i, t in added.items() if t.special}

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)


def read_fast_dir(path: Path) -> FastDir:
    """``path`` read as ``write_fast_dir`` wrote it; TokenizerDirError unless tokenizer.json parses, the
    config names a fast class, and every role it names is a token of the vocabulary."""
    from tokenizers import Tokenizer

    config = read_json_part(path / CONFIG_JSON)
    tok = read_part(path / TOKENIZER_JSON, lambda p: Tokenizer.from_file(str(p)))
    if config.get("tokenizer_class") not in (FAST_CLASS, "TokenizersBackend"):
        raise TokenizerDirError(f"{path / CONFIG_JSON}: tokenizer_class {config.get('tokenizer_class')!r}, "
                           f"not {FAST_CLASS}")
    roles = {}
    for role in ROLES:
        token = config.get(role)
        if token is None:
            continue
        token = token["content"] if isinstance(token, dict) else token
        i = tok.token_to_id(token)
        if i is None:
            raise TokenizerDirError(f"{path / CONFIG_JSON}: {role} {token!r} is not in {TOKENIZER_JSON}'s vocabulary")
        roles[role] = (token, i)
    return FastDir(tok, roles)


def byte_level_alphabet() -> dict[int, str]:
    """Byte-level BPE's alphabet, byte -> the character that stands for it: GPT-2's ``bytes_to_unicode``
    (openai/gpt-2 src/encoder.py): printable bytes as themselves, the other 68 (whitespace among them) as
    chr(256 + k), k their rank in byte order (a space is ``Ġ``, a newline ``Ċ``)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    moved = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + k) for k, b in enumerate(moved)}}
