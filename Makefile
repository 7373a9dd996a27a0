# One command per job. Variables can be set on the command line: make preprocess TRAIN_DIR=...
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0

TRAIN_DIR ?= data/train
EVAL_DIR ?=
TOKENIZER ?= tokenizer
TOKENIZER_TYPE ?= auto
CACHE_DIR ?= cache
MAX_SEQ_LENGTH ?= 512
EXT ?= txt
TEXT_COLUMN ?=
NUM_SLICES ?=
SLICE ?=
EXECUTOR ?=
RAY_ADDRESS ?=
NUM_WORKERS ?=
BENCH_MB ?= 50
OUTPUT_DIR ?= output
ARCHITECTURE ?= roberta-base
DATASETS_TYPE ?= MemmapConcatFullSentenceTextDataset

.PHONY: setup tokenizer preprocess train inspect test test-all quality style docs bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build lying on CPU machines; then the project
# with a torch>=2.4 range that build satisfies, so no CUDA wheel is pulled.
# The stamp makes every target below install the project once, then never again
# until pyproject.toml changes.
INSTALLED := $(VENV)/.installed
$(INSTALLED): pyproject.toml | $(BIN)/python
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then $(BIN)/pip install -q "$(TORCH_CPU)"; fi
	$(BIN)/pip install -q -e ".[train,thai,dev,bench,plot]"
	touch $@

setup: $(INSTALLED)

# Train a tokenizer on a sample of the corpus, read as preprocess reads it (TRAIN_DIR=a=DIR,b=DIR: named
# corpora; ARGS="--mixture a=0.7,b=0.3 --recursive ..."). TOKENIZER_KIND: bpe | wordpiece | unigram | spm | newmm | syllable.
TOKENIZER_KIND ?= spm
VOCAB_SIZE ?= 8000
tokenizer: $(INSTALLED)
	$(BIN)/mlm-train-tokenizer --type $(TOKENIZER_KIND) --train_dir "$(TRAIN_DIR)" --ext "$(EXT)" \
		$(if $(TEXT_COLUMN),--text_column "$(TEXT_COLUMN)") --vocab_size $(VOCAB_SIZE) --output_dir "$(TOKENIZER)" $(ARGS)

# EXT names the shards' format (txt, txt.gz, jsonl.zst, parquet ...); TEXT_COLUMN the records' text field.
# Several formats in one split: EXT=txt,jsonl.zst,parquet (each file by its own extension).
# Several dirs: TRAIN_DIR=a,b. NUM_SLICES=N SLICE=K: one slice of a sliced build; EXECUTOR=ray
# [RAY_ADDRESS=auto]: on a Ray cluster (README: Many CPU nodes).
# Any other flag goes in ARGS, e.g. ARGS="--validation_split_percentage 1".
preprocess: $(INSTALLED)
	$(BIN)/mlm-preprocess --tokenizer_name_or_path "$(TOKENIZER)" --tokenizer_type "$(TOKENIZER_TYPE)" \
		--train_dir "$(TRAIN_DIR)" $(if $(EVAL_DIR),--eval_dir "$(EVAL_DIR)") --ext "$(EXT)" \
		$(if $(TEXT_COLUMN),--text_column "$(TEXT_COLUMN)") \
		$(if $(NUM_SLICES),--num_slices $(NUM_SLICES) --slice $(SLICE)) \
		$(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(RAY_ADDRESS),--ray_address $(RAY_ADDRESS)) \
		--datasets_cache_dir "$(CACHE_DIR)" --max_seq_length $(MAX_SEQ_LENGTH) \
		$(if $(NUM_WORKERS),--num_workers $(NUM_WORKERS)) $(ARGS)

# Trains on the cache that `make preprocess` built; never tokenizes. Extra Trainer flags go in ARGS.
train: $(INSTALLED)
	$(BIN)/mlm-train --tokenizer_name_or_path "$(TOKENIZER)" --tokenizer_type "$(TOKENIZER_TYPE)" \
		--datasets_cache_dir "$(CACHE_DIR)" --max_seq_length $(MAX_SEQ_LENGTH) --datasets_type $(DATASETS_TYPE) \
		--architecture $(ARCHITECTURE) --output_dir "$(OUTPUT_DIR)" $(ARGS)

# Summary of every split of the cache; INSPECT=status|verify|samples for the other views.
INSPECT ?= show
inspect: $(INSTALLED)
	$(BIN)/mlm-inspect $(INSPECT) "$(CACHE_DIR)" $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup
	$(BIN)/python -m pytest -q

quality: setup
	$(BIN)/ruff check common preprocess train tests bench

style: setup
	$(BIN)/ruff check --fix common preprocess train tests bench
	$(BIN)/ruff format common preprocess train tests bench

# docs/flags.md from the commands' own parsers; tests/test_docs.py fails until it is rerun after a flag changes.
docs: setup
	$(BIN)/python scripts/flag_reference.py

# From nothing to a trained tiny model on 2 CPU cores in a few minutes; everything under demo_out/.
DEMO := demo_out
demo: setup
	rm -rf $(DEMO)  # the demo's own dir: every run starts from nothing
	@echo "== 1/6 corpus (Thai + English, deterministic)"
	$(BIN)/python scripts/make_corpus.py --out $(DEMO)/text
	@echo "== 2/6 tokenizer (Thai word-level: PyThaiNLP newmm, the users' ThaiWordsNewmmTokenizer)"
	$(BIN)/mlm-train-tokenizer --type newmm --train_dir $(DEMO)/text/train --output_dir $(DEMO)/tokenizer
	@echo "== 3/6 preprocess"
	$(BIN)/mlm-preprocess --tokenizer_name_or_path $(DEMO)/tokenizer --tokenizer_type newmm \
		--train_dir $(DEMO)/text/train --eval_dir $(DEMO)/text/eval --datasets_cache_dir $(DEMO)/cache \
		--max_seq_length 64
	@echo "== 4/6 train roberta-tiny"
	$(BIN)/mlm-train --tokenizer_name_or_path $(DEMO)/tokenizer --tokenizer_type newmm \
		--datasets_cache_dir $(DEMO)/cache --max_seq_length 64 --architecture roberta-tiny \
		--output_dir $(DEMO)/model --max_steps 600 --per_device_train_batch_size 32 --learning_rate 1e-3 \
		--warmup_steps 30 --eval_strategy steps --eval_steps 150 --logging_steps 50 --save_strategy no \
		--per_device_eval_batch_size 64 --seed 1 --disable_tqdm true --eval_on_start true
	@echo "== 5/6 inspect"
	$(BIN)/mlm-inspect show $(DEMO)/cache/train
	$(BIN)/mlm-inspect samples $(DEMO)/cache/train -n 2
	@echo "== 6/6 fill one <mask>"
	$(BIN)/python scripts/fill_mask.py $(DEMO)/model "ฉัน ชอบกิน <mask> ตอนเช้า" --tokenizer_type newmm
	$(BIN)/python scripts/demo_summary.py $(DEMO)

bench: setup
	$(BIN)/python bench/preprocess_bench.py --mb $(BENCH_MB)

clean:
	rm -rf bench_out demo_out .pytest_cache
