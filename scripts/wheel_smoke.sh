#!/usr/bin/env bash
# The package as users install it: build the wheel, install it into a fresh virtualenv outside the checkout
# (torch first, pinned, as scripts/install.sh does), then run `degaml --version`, `degaml list-tasks` and a
# tiny evaluate (a random 2-layer model and a 4-item task file made on the spot) from a directory that holds
# no source. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PY=${PYTHON:-python3}
"$PY" -m venv "$WORK/build-venv"
"$WORK/build-venv/bin/python" -m pip --disable-pip-version-check -q install build
"$WORK/build-venv/bin/python" -m build --wheel --outdir "$WORK/dist" "$REPO" > "$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log"; exit 1; }
"$PY" -m venv "$WORK/venv"
PIP="$WORK/venv/bin/python -m pip --disable-pip-version-check -q"
$PIP install "torch==$TORCH_VERSION"
$PIP install "$WORK"/dist/degaml-*.whl
cd "$WORK"
"$WORK/venv/bin/degaml" --version
"$WORK/venv/bin/degaml" list-tasks > tasks.txt
head -3 tasks.txt
"$WORK/venv/bin/python" - <<'PY'
import json
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(["Question: which colour is the sky? Answer: blue red green"] * 10,
                        trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
LlamaForCausalLM(config).save_pretrained("tiny-model")
fast.save_pretrained("tiny-model")
with open("task.jsonl", "w") as f:
    for i in range(12):
        f.write(json.dumps({"question": f"Which colour is thing {i}?", "choices": ["blue", "red"], "gold": i % 2}) + "\n")
PY
"$WORK/venv/bin/degaml" evaluate --model.name tiny-model --model.dtype float32 --data.tasks task.jsonl \
    --data.limit 4 --out eval --progress false
test -s eval/results.json
echo "wheel smoke test passed: $(ls "$WORK"/dist)"
