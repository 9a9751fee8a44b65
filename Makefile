# Two entry points for a new user: `make demo` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench ablations clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,perf,serve,tf]'
	touch $@

demo: $(STAMP)  ## the whole offline pipeline on the shipped checkpoint
	$(BIN)/bigbigan pipeline --out out/pipeline

test: $(STAMP) lint  ## fast tests, then the slow end-to-end ones
	$(BIN)/pytest -q
	$(BIN)/pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)  ## every backend and precision side by side (see README)
	$(BIN)/bigbigan bench --out out/bench

ablations: $(STAMP)  ## the recipe ablations of docs/quality.md (hours of CPU; resumable)
	$(BIN)/python benchmarks/ablations.py --root runs/ablation --jobs 2

clean:
	rm -rf $(VENV) out
