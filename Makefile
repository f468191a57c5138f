# Every command creates the virtual environment on first use (or after pyproject.toml changes).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: compare test test-all lint format bench sortseq help

help:
	@echo "make compare   the main job: RNN vs GRU vs LSTM vs Transformer vs CNN on the built-in DNA benchmark"
	@echo "make test      the default test suite (fast, offline)"
	@echo "make test-all  every test, slow ones included"
	@echo "make bench     the benchmarks in bench/ (one JSON line each)"
	@echo "make sortseq   fetch the Sort-Seq data and run the comparison on it"
	@echo "make lint      ruff check + format check"

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

compare: $(STAMP)
	$(PY) -m experiments compare --config experiments/dna/compare.yaml

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) bench/dna_encoding.py
	$(PY) bench/trainer_overhead.py

sortseq: $(STAMP)
	$(PY) -m experiments data sortseq
	$(PY) -m experiments compare --config experiments/dna/sortseq_compare.yaml
