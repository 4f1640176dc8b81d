# grokkit: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast lint typecheck format bench bench-sweep bench-measures bench-early-warning profile bench-torch grok docs-figures clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install grokkit with its dev extra

test: $(STAMP) ## Run the whole test suite (creates .venv on first use)
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## Run the tests without the slow ones
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check grokkit tests benchmarks tools
	$(BIN)/ruff format --check grokkit tests benchmarks tools

typecheck: $(STAMP) ## Static type check (mypy)
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix grokkit tests benchmarks tools
	$(BIN)/ruff format grokkit tests benchmarks tools

bench: $(STAMP) ## Throughput, GFLOP/s vs peak, start-up, time to grok; then bench-sweep (~25 min in all)
	$(BIN)/python benchmarks/bench.py $(ARGS)
	$(BIN)/python benchmarks/sweep_bench.py $(ARGS)

bench-sweep: $(STAMP) ## 2-, 4- and 8-seed sweeps vs the same runs one at a time, nanda2023 sweep capacity (~15 min)
	$(BIN)/python benchmarks/sweep_bench.py $(ARGS)

bench-measures: $(STAMP) ## Progress measures' share of a chunk at the default eval interval, per family (ARGS=--quick)
	$(BIN)/python benchmarks/measure_cost.py $(ARGS)

bench-early-warning: $(STAMP) ## Lead time and false alarms of every early-warning signal over 64 real runs (~7 min; ARGS=--quick)
	$(BIN)/python benchmarks/early_warning.py $(ARGS)

profile: $(STAMP) ## Where a step's time goes: plain vs fast model, forward, backward, optimizer; matmul share (nanda2023, power2022)
	$(BIN)/python benchmarks/profile_step.py $(ARGS)

# PyTorch is a bench-only extra with its own venv, never a runtime or test dependency; the CPU
# wheel index avoids PyPI's CUDA build (GBs). Another source: make bench-torch TORCH_INDEX=URL
TORCH_VENV := .venv-bench-torch
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
$(TORCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/python -m pip install --quiet torch --index-url $(TORCH_INDEX)
	$(TORCH_VENV)/bin/python -m pip install --quiet -e .
	touch $@

bench-torch: $(TORCH_VENV)/.installed ## grokkit vs a PyTorch restatement (nanda2023, power2022), same run, in .venv-bench-torch (ARGS=--check, --rounds N)
	$(TORCH_VENV)/bin/python benchmarks/bench_torch.py $(ARGS)

docs-figures: $(STAMP) ## Rerun the README's quoted commands and rewrite their blocks (~10 min; ARGS=--check, --only NAME, --list)
	$(BIN)/python tools/docs_figures.py $(ARGS)

grok: $(STAMP) ## The main job: train mod-add p=97 and watch it grok
	$(BIN)/grokkit train --task mod-add --p 97

clean: ## Remove the virtual environment, caches and runs/
	rm -rf $(VENV) .venv-bench-torch .pytest_cache .ruff_cache build *.egg-info runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
