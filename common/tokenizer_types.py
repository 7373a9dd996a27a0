"""The tokenizer classes of the users' run_mlm.py, on transformers v5's ``PreTrainedTokenizer``.

v5 splits slow tokenizers into ``PythonBackend`` (= ``PreTrainedTokenizer``)
and ``SentencePieceBackend``; classes such as ``XLMRobertaTokenizer`` are now
always ``tokenizers``-backed and silently ignore a ``vocab_file=x.model``.
So these classes derive from ``PreTrainedTokenizer`` and own their model:

* ``ThaiRobertaTokenizer``: a SentencePiece model, ids straight from the
  model (no fairseq offset), ``<s> X </s>``, ``<_>`` as the space token.
* ``ThaiWordsNewmmTokenizer`` / ``ThaiWordsSyllableTokenizer``: word-level
  over a vocabulary JSON, segmented offline by PyThaiNLP.
* ``FakeSefrCutTokenizer``: word-level over text already split by ``<|>``.

Each also offers ``encode_batch_native(lines)``: the same ids as
``tokenizer(line, add_special_tokens=False)`` without the per-call overhead
of transformers (checked at every preprocess run, see preprocess/encoder.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizer

from common.format import SPACE_TOKEN
from common.segmenters import segment_newmm, segment_presplit, segment_syllable
from common.word_level import SPECIALS, words_of

SPIECE_UNDERLINE = "▁"


class ThaiRobertaTokenizer(PreTrainedTokenizer):
    """SentencePiece tokenizer with ids taken straight from the model.

    With ``add_space_token`` spaces become ``<_>`` (a user-defined piece of
    the model) before encoding and come back as spaces when decoding, and
    ``▁`` (SentencePiece's word start, here only at line starts and between
    lines) decodes to a newline. Without it ``▁`` is a space, as usual.
    """

    vocab_files_names = {"vocab_file": "sentencepiece.bpe.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, add_space_token: bool = False, **kwargs: Any):
        import sentencepiece as spm

        self.vocab_file = vocab_file
        self.add_space_token = add_space_token
        self.sp_model = spm.SentencePieceProcessor(model_file=str(vocab_file))
        for k, v in SPECIALS.items():
            kwargs.setdefault(k, v)
        kwargs.setdefault("special_tokens_pattern", "bos_eos")
        super().__init__(add_space_token=add_space_token, **kwargs)

    def __getstate__(self) -> dict:
        # SentencePieceProcessor pickles in new versions but not all; reload from the file instead.
        return {**self.__dict__, "sp_model": None}

    def __setstate__(self, state: dict) -> None:
        import sentencepiece as spm

        self.__dict__.update(state)
        self.sp_model = spm.SentencePieceProcessor(model_file=str(self.vocab_file))

    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size()

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _prepare(self, text: str) -> str:
        return text.replace(" ", SPACE_TOKEN) if self.add_space_token else text

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self.sp_model.encode(self._prepare(text), out_type=str)

    def encode_batch_native(self, lines: list[str]) -> list[list[int]]:
        return self.sp_model.encode([self._prepare(s) for s in lines])

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        return self.sp_model.id_to_piece(index)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        text = "".join(tokens)
        if self.add_space_token:
            return text.replace(SPIECE_UNDERLINE, "\n").replace(SPACE_TOKEN, " ").strip("\n")
        return text.replace(SPIECE_UNDERLINE, " ").strip()

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        out = Path(save_directory) / ((filename_prefix + "-" if filename_prefix else "") + self.vocab_files_names["vocab_file"])
        if Path(self.vocab_file).resolve() != out.resolve():
            shutil.copyfile(self.vocab_file, out)
        return (str(out),)

    def fast_equivalent(self) -> Any:
        """A ``tokenizers``-backed twin, so a saved model loads with ``AutoTokenizer`` without this package.

        Same ids as this class on ordinary text (tested); it differs only
        around special-token strings inside the text and leading spaces.
        """
        from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import SpmConverter

        fast = SpmConverter(self).converted()
        # SentencePiece adds its word-start mark once per text, not after each added token.
        fast.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="first")
        if self.add_space_token:
            fast.normalizer = normalizers.Sequence([normalizers.Replace(" ", SPACE_TOKEN), fast.normalizer])
            fast.add_tokens([AddedToken(SPACE_TOKEN, normalized=True, special=False)])
            fast.decoder = decoders.Sequence([decoders.Replace(SPIECE_UNDERLINE, "\n"), decoders.Replace(SPACE_TOKEN, " "),
                                              decoders.Strip("\n", 1, 0)])
        bos, eos = self.bos_token, self.eos_token
        fast.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
            special_tokens=[(bos, self.bos_token_id), (eos, self.eos_token_id)],
        )
        return PreTrainedTokenizerFast(tokenizer_object=fast, **{k: getattr(self, k) for k in SPECIALS})

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """Save this tokenizer and, beside it, its fast twin's ``tokenizer.json``."""
        files = super().save_pretrained(save_directory, *args, **kwargs)
        try:
            self.fast_equivalent().backend_tokenizer.save(str(Path(save_directory) / "tokenizer.json"))
        except Exception as e:  # the slow files are complete without it; say why it is missing
            import warnings

            warnings.warn(f"no tokenizer.json written beside the SentencePiece model: {e}", stacklevel=2)
            return files
        return (*files, str(Path(save_directory) / "tokenizer.json"))


class _WordLevelTokenizer(PreTrainedTokenizer):
    """Word-level: segment, then look each word up in a vocabulary JSON; spaces are ``<_>``."""

    vocab_files_names = {"vocab_file": "vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, **kwargs: Any):
        with open(vocab_file, encoding="utf-8") as f:
            self.vocab: dict[str, int] = json.load(f)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.vocab_file = vocab_file
        for k, v in SPECIALS.items():
            kwargs.setdefault(k, v)
        kwargs.setdefault("special_tokens_pattern", "bos_eos")
        super().__init__(**kwargs)
        self._unk = self.vocab[self.unk_token]
        self._space = self.vocab.get(SPACE_TOKEN)

    segment = staticmethod(lambda text: text.split())  # each subclass names its segmenter

    def _words(self, text: str) -> list[str]:
        return words_of(self.segment, text, self._space is not None)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return {**self.vocab, **self._added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self._words(text)

    def encode_batch_native(self, lines: list[str]) -> list[list[int]]:
        get, unk = self.vocab.get, self._unk
        return [[get(w, unk) for w in self._words(s)] for s in lines]

    def _convert_token_to_id(self, token: str) -> int:
        return self.vocab.get(token, self._unk)

    def _convert_id_to_token(self, index: int) -> str:
        return self.ids_to_tokens.get(index, self.unk_token)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(" " if t == SPACE_TOKEN else t for t in tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        out = Path(save_directory) / ((filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, ensure_ascii=False, indent=0)
        return (str(out),)


class ThaiWordsNewmmTokenizer(_WordLevelTokenizer):
    segment = staticmethod(segment_newmm)


class ThaiWordsSyllableTokenizer(_WordLevelTokenizer):
    segment = staticmethod(segment_syllable)


class FakeSefrCutTokenizer(_WordLevelTokenizer):
    segment = staticmethod(segment_presplit)


def load_from_dir(cls: type, path: Path, **kwargs: Any) -> PreTrainedTokenizer:
    """``cls.from_pretrained`` on a dir, or ``cls(vocab_file=...)`` on a bare model/vocab file."""
    if path.is_file():
        return cls(vocab_file=str(path), **kwargs)
    name = cls.vocab_files_names["vocab_file"]
    if not (path / name).is_file():
        alt = sorted(path.glob("*.model" if name.endswith(".model") else "*.json"))
        if name.endswith(".model") and len(alt) == 1:  # a SentencePiece model under another name (tokenizer.model)
            return cls(vocab_file=str(alt[0]), **kwargs)
        hint = f"; found {', '.join(p.name for p in alt[:3])}" if alt else ""
        raise FileNotFoundError(f"{path}: no {name}{hint}")
    return cls.from_pretrained(str(path), local_files_only=True, **kwargs)

