# Two commands on a fresh clone: `make demo` (train the quickstart recipe) and `make test`.
# Each creates .venv and installs what it needs first (offline-capable after the first install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch 2.13.0 (a plain `torch` requirement would pull a multi-GB CUDA build).
TORCH := torch==2.13.0
# `make demo` installs what the main job needs (the runtime dependencies); `make test` adds the [dev]
# extra (pytest, lm-eval, trackers, CIDEr-D, optuna), whose tests run rather than skip.
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(RUNTIME)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/hf-tuner train quickstart --overwrite

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_quickstart.py --repeats 2
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_causal_lm.py
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_chat.py
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_reward.py --repeats 2
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_grpo.py --repeats 2
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_dpo.py --repeats 2
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_ner.py --repeats 2
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/bench_mlm.py --repeats 2

clean:
	rm -rf runs .pytest_cache
