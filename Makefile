# Every target sets up what it needs first: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo lab app serve test check bench clean system-deps node-deps

# Jupyter refuses to run as root unless told; containers often are root. Loopback only.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,lab,asr,samples]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

# Stoplight Prism, which tests/test_prism_agreement.py compares mgsim with (npm ci).
node-deps:
	@bash scripts/node-deps.sh

## demo: run the card-payment call through the embedded simulator
demo: $(STAMP)
	$(BIN)/mgsim demo

## lab: open JupyterLab on the notebooks (embedded simulator, works offline)
# The notebooks are trusted first (in Jupyter's local database; the files are unchanged) so
# that JupyterLab draws their saved widgets instead of the widgets' text form.
lab: $(STAMP)
	@$(BIN)/jupyter trust notebooks/*.ipynb >/dev/null
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/

## app: the run panel as a dashboard without code (Voila) on http://127.0.0.1:8866
APP_PORT ?= 8866
app: $(STAMP)
	$(BIN)/voila --no-browser --Voila.ip=127.0.0.1 --port=$(APP_PORT) --Voila.port_retries=0 \
		notebooks/app.ipynb

## serve: the simulated gateway on http://127.0.0.1:8080
serve: $(STAMP)
	$(BIN)/mgsim serve

## test: the whole suite, as CI runs it
test: $(STAMP) system-deps node-deps
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
