"""Shared fixtures: tokenizers trained here on test text (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.corpus import make_lines, write_shards

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _wordpiece(out: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(make_lines(3000, seed=99), trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out)
    return out


def _bytelevel_bpe(out: Path) -> Path:
    """RoBERTa-style: byte-level BPE with <s> <pad> </s> <unk> <mask>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(make_lines(3000, seed=98), trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(out)
    return out


def _sentencepiece(out: Path) -> Path:
    """A slow SentencePiece-backed tokenizer (BertGenerationTokenizer) with a '▁' piece."""
    import sentencepiece as spm
    from transformers import BertGenerationTokenizer

    out.mkdir(parents=True, exist_ok=True)
    text = out / "train.txt"
    text.write_text("\n".join(make_lines(3000, seed=97)), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out / "spm"), vocab_size=100, model_type="unigram",
        bos_id=0, pad_id=1, eos_id=2, unk_id=3, user_defined_symbols=["<mask>"], character_coverage=1.0,
        minloglevel=2,
    )
    text.unlink()
    tok = BertGenerationTokenizer(vocab_file=str(out / "spm.model"), bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    tok.save_pretrained(out)
    (out / "spm.model").unlink()
    (out / "spm.vocab").unlink()
    return out


@pytest.fixture(scope="session")
def wordpiece_dir(tmp_path_factory) -> Path:
    return _wordpiece(tmp_path_factory.mktemp("wordpiece"))


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory) -> Path:
    return _bytelevel_bpe(tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory) -> Path:
    return _sentencepiece(tmp_path_factory.mktemp("spm"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    d = tmp_path / "train"
    write_shards(d)
    return d
