"""The tokenizer families ``mlm-train-tokenizer --type`` trains, one table entry each, from a list of lines.

Each family's ``train(lines, out, options)`` writes a tokenizer into the existing empty dir ``out`` (and
hands back what it already made of the report's lines: the word-level families segment them in their count
workers):

    family     library                  ids 0..4                             loads with --tokenizer_type
    bpe        tokenizers, byte-level   <s> <pad> </s> <unk> <mask>          auto (AutoTokenizer)
    wordpiece  tokenizers, BERT style   [PAD] [UNK] [CLS] [SEP] [MASK]       auto
    unigram    SentencePiece's unigram  <s> <pad> </s> <unk> <mask>          auto (tokenizers' Unigram)
    spm        SentencePiece            <s> <pad> </s> <unk> <mask>, <_>     spm (ThaiRobertaTokenizer + tokenizer.json)
    newmm      PyThaiNLP words          <s> <pad> </s> <unk> <mask> <_>      newmm (ThaiWordsNewmmTokenizer)
    syllable   PyThaiNLP syllables      <s> <pad> </s> <unk> <mask> <_>      syllable (ThaiWordsSyllableTokenizer)

``deterministic``: the same lines and options give byte-identical files, run to run and whatever
``num_workers`` (measured; the reasons are at ``_train_wordpiece`` and ``_sentencepiece``). ``tokenizers``
keys its trainers' word counts by ``ahash`` maps, seeded at random per process, so whatever the trainer
does in map order changes from run to run, on one thread too (RAYON_NUM_THREADS=1).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from common.errors import UserError
from common.fast_tokenizer import write_fast_dir
from common.format import SPACE_TOKEN
from preprocess.workers import meanwhile

ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4, as spm and the word-level types
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPM_THREADS = 16  # SentencePiece's trainer threads, whatever --num_workers (_sentencepiece); spm_train's default
SPM_MAX_SENTENCE = 4192  # bytes: SentencePiece's default longest line, raised to the sample's longest


@dataclass(frozen=True)
class FamilyOptions:
    """What the CLI passes every family; each reads the fields it uses."""

    vocab_size: int | None  # already rounded by the CLI (a multiple of 64 unless the user turned that off)
    num_workers: int
    model_type: str = "unigram"  # spm only: unigram | bpe
    character_coverage: float = 0.9995  # spm and unigram (SentencePiece's trainer)
    add_space_token: bool = False  # spm only: the users' Thai setup, spaces become <_>
    min_frequency: int = 1  # word-level types, and tokenizers' trainers where they take it (bpe, wordpiece)
    held_out: list[str] = field(default_factory=list)  # the report's lines: word-level types segment them too

    def __post_init__(self) -> None:
        if self.vocab_size is not None and self.vocab_size < 1:
            raise UserError(f"--vocab_size {self.vocab_size}: must be at least 1")
        if self.num_workers < 1:
            raise UserError(f"--num_workers {self.num_workers}: must be at least 1")
        if self.min_frequency < 1:
            raise UserError(f"--min_frequency {self.min_frequency}: must be at least 1")
        if not 0.98 <= self.character_coverage <= 1.0:  # SentencePiece's trainer_interface.cc checks the same
            raise UserError(f"--character_coverage {self.character_coverage:g}: SentencePiece takes 0.98 to 1 "
                            "(default 0.9995; 1: every character)")


@dataclass(frozen=True)
class Family:
    name: str  # bpe | wordpiece | unigram | spm | newmm | syllable
    tokenizer_type: str  # what --tokenizer_type loads the output with
    needs_vocab_size: bool
    # Writes the tokenizer into the existing empty dir; returns the segmentations of options.held_out it made
    # (word-level, for the report: preprocess/word_counts.py), or None
    train: Callable[[list[str], Path, FamilyOptions], dict[str, list[str]] | None]
    deterministic: bool  # same lines + options, any num_workers -> byte-identical files (measured)


def round_vocab(n: int, multiple: int = 64) -> int:
    """``n`` rounded up to a multiple of ``multiple``: embedding and output matrices whose rows are a
    multiple of 64 keep tensor-core matmuls on their fast path."""
    return -(-n // multiple) * multiple


def _vocab_size(options: FamilyOptions, family: str) -> int:
    if options.vocab_size is None:
        raise UserError(f"--type {family} needs --vocab_size (a subword vocabulary has no natural size)")
    return options.vocab_size


def _save_fast(tok, out: Path, **roles: str) -> None:
    """Save a ``tokenizers`` object as a dir AutoTokenizer and ``--tokenizer_type auto`` load, naming every
    special role (common/fast_tokenizer.py: without importing transformers)."""
    write_fast_dir(tok, out, roles)


def _train(tok, lines: list[str], trainer) -> None:
    try:
        tok.train_from_iterator(lines, trainer, length=len(lines))
    except Exception as e:  # the Rust trainer's own errors (a vocabulary smaller than the alphabet)
        raise UserError(f"tokenizers: {e}") from None


def _train_bpe(lines: list[str], out: Path, options: FamilyOptions) -> None:
    """Byte-level BPE as RoBERTa/GPT-2: every byte is in the initial alphabet, so any text encodes with
    no unknown and decodes back exactly. Deterministic: the alphabet is sorted by the trainer, every
    character is in it (no per-word ids in map order), and the merge queue's order is total
    (count, then pair ids): tokenizers/src/models/bpe/trainer.rs, ``impl Ord for Merge``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    mask = AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)  # as RoBERTa's
    specials = [*ROBERTA_SPECIALS[:-1], mask]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    _train(tok, lines, trainers.BpeTrainer(
        vocab_size=_vocab_size(options, "bpe"), min_frequency=options.min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    _save_fast(tok, out, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
               mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def _continuation_seeds(lines: list[str]) -> list[str]:
    """``##c`` for every character ``c`` that can continue a word under BERT's pre-tokenizer, sorted.

    Why: the WordPiece trainer gives each ``##c`` its id when it first meets it while walking the word
    counts, an ``ahash`` map in per-process random order (tokenizers/src/models/bpe/trainer.rs,
    ``tokenize_words``); the merge queue breaks count ties by those ids, so the vocabulary itself
    changed run to run, on one thread too. Passed first, as the trainer's special tokens, they get
    fixed ids before the walk. Whitespace, control, punctuation and CJK characters never continue a
    word (BertNormalizer and BertPreTokenizer isolate or drop them), so they get no seed. The cost: a
    ``##c`` for a letter seen only at word starts takes a vocabulary slot the trainer would not have given.
    """
    import unicodedata

    import numpy as np

    seen = np.zeros(0x110000, dtype=bool)  # by code point: 0.09 s for 30 MB of text here
    for i in range(0, len(lines), 10_000):
        text = "".join(lines[i:i + 10_000]).encode("utf-32-le", "surrogatepass")
        seen[np.frombuffer(text, dtype="<u4")] = True
    chars = [chr(c) for c in np.flatnonzero(seen)]

    def continues(c: str) -> bool:
        cat = unicodedata.category(c)
        cjk = 0x4E00 <= ord(c) <= 0x9FFF or 0x3400 <= ord(c) <= 0x4DBF or 0xF900 <= ord(c) <= 0xFAFF \
            or 0x20000 <= ord(c) <= 0x2FA1F
        return not (c.isspace() or cat[0] in "CPZ" or (c.isascii() and not c.isalnum()) or cjk)

    return [f"##{c}" for c in chars if continues(c)]


def _train_wordpiece(lines: list[str], out: Path, options: FamilyOptions) -> None:
    """BERT-style WordPiece, cased and accents kept (Thai vowel and tone marks are accents to BERT's
    ``strip_accents``; lowercasing is a choice for English-only models). Made deterministic by fixing
    the ``##c`` ids first (``_continuation_seeds``); the trainer's copy of them as special tokens is
    dropped by rebuilding the tokenizer from its vocabulary. Words over 100 characters (BERT's
    ``max_input_chars_per_word``) become [UNK]: long Thai runs without a space are such words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    def shell(model) -> Tokenizer:
        tok = Tokenizer(model)
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=False, lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        return tok

    trained = shell(models.WordPiece(unk_token="[UNK]"))
    _train(trained, lines, trainers.WordPieceTrainer(
        vocab_size=_vocab_size(options, "wordpiece"), min_frequency=options.min_frequency,
        special_tokens=[*BERT_SPECIALS, *_continuation_seeds(lines)], continuing_subword_prefix="##",
        show_progress=False))
    tok = shell(models.WordPiece(trained.get_vocab(with_added_tokens=False), unk_token="[UNK]"))
    tok.add_special_tokens(list(BERT_SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    _save_fast(tok, out, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
               mask_token="[MASK]")


def _sentencepiece(lines: list[str], options: FamilyOptions, family: str, **spec) -> bytes:
    """SentencePiece trained on ``lines`` in memory, ids ``<s>``=0 ``<pad>``=1 ``</s>``=2 ``<unk>``=3: the
    serialized model. Every line is used: no sampling (``input_sentence_size=0``: the lines are already the
    sample), and no line skipped as too long (its default 4192 bytes dropped 2% of the bench's sample).

    ``SPM_THREADS`` threads whatever ``num_workers``: each EM step sums the thread's share of the
    sentences, then the shares, in float, so the pieces changed with the thread count (measured: 34 of
    8,000 pieces differ between 1 and 2 threads on bench/tokenizer_train.py's 5 MB sample).
    """
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    longest = max((len(s.encode("utf-8", errors="surrogatepass")) for s in lines), default=0)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=_vocab_size(options, family),
            character_coverage=options.character_coverage, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
            input_sentence_size=0, max_sentence_length=max(longest, SPM_MAX_SENTENCE),
            hard_vocab_limit=False,  # a ceiling: a small sample gets what it supports (reported by the CLI)
            num_threads=SPM_THREADS, minloglevel=2, **spec)
    except RuntimeError as e:  # e.g. a vocab_size the text cannot fill
        raise UserError(f"sentencepiece: {str(e).strip().splitlines()[-1]}") from None
    return model.getvalue()


def unigram_model(lines: list[str], options: FamilyOptions) -> bytes:
    """The SentencePiece unigram model ``_train_unigram`` converts: ``<mask>``=4, the text as it is (no
    NFKC, spaces kept as they are), so that the converted ``tokenizer.json`` tokenizes as it does."""
    return _sentencepiece(lines, options, "unigram", model_type="unigram", user_defined_symbols=["<mask>"],
                          normalization_rule_name="identity", remove_extra_whitespaces=False)


def _train_unigram(lines: list[str], out: Path, options: FamilyOptions) -> None:
    """Unigram trained by SentencePiece, saved as a ``tokenizers`` Unigram ``tokenizer.json`` (no
    ``.model``): the pieces with their scores, in SentencePiece's ids and order (by score, then piece).

    SentencePiece rather than ``tokenizers``' UnigramTrainer: 11x faster on the bench's 5 MB sample
    (4.7 s vs 52 s), and deterministic (``_sentencepiece``), where the Rust trainer walks its word
    counts in per-process ``ahash`` order, so scores differed in the last bits run to run.

    SentencePiece's whitespace, rebuilt: a ``▁`` is put before the text, even one that starts with a
    space (the ``Prepend`` normalizer: the Metaspace pre-tokenizer's own prepending skips such text, and
    gave other ids on each of the 14 lines of the bench's 6,975 that start with one), then spaces become
    ``▁`` that start a word. The two then gave the same ids on all 6,975; they may differ only where two
    segmentations score exactly the same, a tie each library breaks its own way (tested).
    """
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = spm.SentencePieceProcessor(model_proto=unigram_model(lines, options))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    n = len(ROBERTA_SPECIALS)
    assert [p for p, _ in vocab[:n]] == list(ROBERTA_SPECIALS), vocab[:n]
    tok = Tokenizer(models.Unigram(vocab, unk_id=ROBERTA_SPECIALS.index("<unk>"), byte_fallback=False))
    tok.normalizer = normalizers.Prepend("▁")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")  # drops the first ▁
    tok.add_special_tokens(list(ROBERTA_SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    _save_fast(tok, out, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
               mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def _train_spm(lines: list[str], out: Path, options: FamilyOptions) -> None:
    """SentencePiece with the users' ids (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, then the
    user-defined ``<mask>`` and ``<_>``), saved as a ThaiRobertaTokenizer dir plus its tokenizer.json
    twin. The model is written through ``model_writer``, so its ``trainer_spec`` records no
    ``model_prefix`` (the output path made every dir's model differ).
    """
    space = options.add_space_token
    # transformers (0.6-0.8 s to import) on a thread while SentencePiece trains, which releases the GIL:
    # 5.8-6.0 s for both on the bench's 5 MB sample, against 6.2-6.7 s one after the other.
    with meanwhile(partial(importlib.import_module, "common.tokenizer_types")):
        model = _sentencepiece([s.replace(" ", SPACE_TOKEN) for s in lines] if space else lines, options, "spm",
                               model_type=options.model_type, user_defined_symbols=["<mask>", SPACE_TOKEN])
    from common.tokenizer_types import ThaiRobertaTokenizer

    model_file = out / ThaiRobertaTokenizer.vocab_files_names["vocab_file"]
    model_file.write_bytes(model)
    ThaiRobertaTokenizer(vocab_file=str(model_file), add_space_token=space).save_pretrained(out)


def _word_level(kind: str) -> Callable[[list[str], Path, FamilyOptions], dict[str, list[str]]]:
    def train(lines: list[str], out: Path, options: FamilyOptions) -> dict[str, list[str]]:
        """Specials first (``WORD_SPECIALS``), then words by falling count, ties by word (build_word_vocab),
        written as the class's save_pretrained writes them, without importing it (common/word_level.py);
        the held-out lines segmented by the same workers."""
        from common.tokenizer import TOKENIZER_TYPES
        from common.word_level import WORD_SPECIALS, build_word_vocab, write_word_dir
        from preprocess.word_counts import count_and_segment

        counts, segmented = count_and_segment(kind, lines, options.held_out, options.num_workers)
        vocab = build_word_vocab(counts, options.vocab_size, options.min_frequency)
        if len(vocab) == len(WORD_SPECIALS):  # every word would be <unk>: a tokenizer that looks made, and is not
            raise UserError(f"--min_frequency {options.min_frequency} leaves no word: the sample's most frequent "
                            f"is seen {max(counts.values(), default=0):,} times; lower --min_frequency, or add text")
        write_word_dir(out, vocab, TOKENIZER_TYPES[kind].class_name)
        return segmented

    return train


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("bpe", "auto", True, _train_bpe, deterministic=True),
    Family("wordpiece", "auto", True, _train_wordpiece, deterministic=True),
    Family("unigram", "auto", True, _train_unigram, deterministic=True),
    Family("spm", "spm", True, _train_spm, deterministic=True),
    Family("newmm", "newmm", False, _word_level("newmm"), deterministic=True),
    Family("syllable", "syllable", False, _word_level("syllable"), deterministic=True),
)}
