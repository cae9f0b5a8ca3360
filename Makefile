# Two commands on a fresh machine:
#   make demo   set up .venv and run every pipeline offline (kedro run --env demo)
#   make test   set up .venv and run the test suite
# Where the Hugging Face Hub is reachable, `make run` runs the real job (base env).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo run test lint bench viz package clean

$(BIN)/kedro: requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(BIN)/kedro

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/kedro run --env demo

run: install
	$(BIN)/kedro run

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m benchmarks

viz: install
	$(BIN)/kedro viz run --env demo

package: install
	$(BIN)/kedro package

clean:
	rm -rf $(VENV) build dist mlflow.db mlruns
