# The two commands of the README: `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5672

.PHONY: run test lint typecheck unit bench bench-suite clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	mkdir -p var/router
	$(BIN)/router serve --config config/router.yaml --topology config/topology.yaml --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check router tests
	$(BIN)/ruff format --check router tests

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test
	$(BIN)/pytest

test: lint typecheck unit

bench: $(VENV)/.installed-test
	$(BIN)/router bench --compare $${COMPARE_URL:-amqp://guest:guest@127.0.0.1:5673/%2F}

# every scenario of docs/benchmarks.md, one JSON file each, and the plot
bench-suite: $(VENV)/.installed-test
	$(BIN)/router bench --scenario suite --runs 3 --json-dir docs/bench/suite \
		--compare $${COMPARE_URL:-amqp://guest:guest@127.0.0.1:5673/%2F}
	$(BIN)/router bench-plot docs/bench/suite/*.json --out docs/bench/suite.png

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
