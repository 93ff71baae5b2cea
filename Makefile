# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint slow reliability clean default-bundle

# Surrogate subjects (real ds003768 scorings) the shipped default bundle is trained on. The demo's
# subject (27, simulators.surrogate.BUNDLED_SUBJECT) is deliberately not among them.
TRAINING_SUBJECTS ?= 04 07 09 11 14 15 16 19 23 24 25 30
TRAINING_DIR ?= build/surrogate-training

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) run_stream.py demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy
	$(PY) -m pytest -n 2 --dist worksteal

slow: $(STAMP)
	$(PY) -m pytest -m slow

reliability: $(STAMP)
	$(PY) -m pytest -m "reliability or security" -n 2 --dist worksteal

default-bundle: $(STAMP)
	rm -rf $(TRAINING_DIR)
	for subject in $(TRAINING_SUBJECTS); do \
		$(PY) run_stream.py surrogate -o $(TRAINING_DIR) --subject $$subject --runs rest-1 sleep-1 || exit 1; \
	done
	$(PY) run_stream.py extract $(TRAINING_DIR) -o $(TRAINING_DIR)/features.parquet
	$(PY) run_stream.py train $(TRAINING_DIR)/features.parquet -o model/default_bundle \
		--labels wake-sleep --folds 5 --context 0 \
		--note "Trained on surrogate sessions: its accuracy says nothing about real brains."

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
