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
NUM_WORKERS ?=
BENCH_MB ?= 50
OUTPUT_DIR ?= output
ARCHITECTURE ?= roberta-base
DATASETS_TYPE ?= MemmapConcatFullSentenceTextDataset

.PHONY: setup preprocess train inspect test test-all quality style bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build lying on CPU machines; then the project
# with a torch>=2.4 range that build satisfies, so no CUDA wheel is pulled.
setup: $(BIN)/python
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then $(BIN)/pip install -q "$(TORCH_CPU)"; fi
	$(BIN)/pip install -q -e ".[train,thai,dev,bench]"

preprocess: $(BIN)/python
	$(BIN)/mlm-preprocess --tokenizer_name_or_path "$(TOKENIZER)" --tokenizer_type "$(TOKENIZER_TYPE)" \
		--train_dir "$(TRAIN_DIR)" $(if $(EVAL_DIR),--eval_dir "$(EVAL_DIR)") --ext "$(EXT)" \
		--datasets_cache_dir "$(CACHE_DIR)" --max_seq_length $(MAX_SEQ_LENGTH) \
		$(if $(NUM_WORKERS),--num_workers $(NUM_WORKERS)) $(ARGS)

# Trains on the cache that `make preprocess` built; never tokenizes. Extra Trainer flags go in ARGS.
train: $(BIN)/python
	$(BIN)/mlm-train --tokenizer_name_or_path "$(TOKENIZER)" --tokenizer_type "$(TOKENIZER_TYPE)" \
		--datasets_cache_dir "$(CACHE_DIR)" --max_seq_length $(MAX_SEQ_LENGTH) --datasets_type $(DATASETS_TYPE) \
		--architecture $(ARCHITECTURE) --output_dir "$(OUTPUT_DIR)" $(ARGS)

# Summary of every split of the cache; INSPECT=status|verify|samples for the other views.
INSPECT ?= show
inspect: $(BIN)/python
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

bench: setup
	$(BIN)/python bench/preprocess.py --mb $(BENCH_MB)

clean:
	rm -rf bench_out demo_out .pytest_cache
