# The two commands a newcomer types: `make run` and `make test`.
# Both create the virtual environment in .venv and install the project first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS := server,detectors,kubernetes,redis,postgres,dev
PYTEST_ARGS ?=

.PHONY: install run test lint bench bench-install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run-local.sh

lint: install
	$(BIN)/ruff check aegis tests benchmarks examples
	$(BIN)/mypy aegis

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),bench]'
	touch $@

bench-install: $(VENV)/.bench-installed

bench: bench-install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
