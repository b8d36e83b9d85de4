# Every target sets up what it needs first: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo lab serve test check bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,lab,asr]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

## demo: run the card-payment call through the embedded simulator
demo: $(STAMP)
	$(BIN)/mgsim demo

## lab: open JupyterLab on the notebooks (embedded simulator, works offline)
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

## serve: the simulated gateway on http://127.0.0.1:8080
serve: $(STAMP)
	$(BIN)/mgsim serve

## test: the whole suite, as CI runs it
test: $(STAMP) system-deps
	$(BIN)/pytest

## check: lint and type-check
check: $(STAMP)
	$(BIN)/ruff check mgsim tests benchmarks
	$(BIN)/mypy

## bench: benchmarks; results go to benchmarks/out/ and are summarised in benchmarks/RESULTS.md
bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
