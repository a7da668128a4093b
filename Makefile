# Fresh machine: `make demo` then `make test`. Everything runs from .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision are pinned in pyproject.toml; pip takes them from this machine's disk
	$(BIN)/pip install --quiet -e '.[dev,bench,bioimageio]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/unetkit demo --out runs/demo

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests

bench: $(STAMP)
	$(BIN)/unetkit bench speed --json

clean:
	rm -rf runs .pytest_cache .ruff_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
