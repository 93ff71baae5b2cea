# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint slow clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) run_stream.py demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

slow: $(STAMP)
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
