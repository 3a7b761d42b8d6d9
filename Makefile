# Two entry points for a fresh machine: `make run` and `make test` (each creates .venv and installs).
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: run test test-slow lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/partnero-bridge serve --config config.example.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

# soak and load tests: the 1,000-event fault-injection run with 5 SIGKILLs, larger fuzzing
test-slow: $(STAMP)
	$(VENV)/bin/pytest -m slow

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
