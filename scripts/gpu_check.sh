#!/usr/bin/env bash
# On a lent GPU machine (no network; its python3 holds CUDA PyTorch, transformers, peft, accelerate,
# sentence-transformers): the `cuda` tests, then one timed generator training step at the paper's decoder size
# (Qwen2.5-0.5B, r 8: condition (128, 384, 384), tokens (4296, 10, 130)). Packages that image lacks come as
# wheels in .gpu-wheels/ (made here by `scripts/gpu_check.sh --prepare`, carried with the run). About 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then  # on a machine with the package registries: the wheels the GPU image lacks
    python3 -m pip download --no-deps -q -d .gpu-wheels jsonargparse docstring-parser typeshed-client \
        typing-inspection "gguf>=0.10" datasets dill multiprocess xxhash pyarrow filelock
    exit 0
fi
PY=${PYTHON:-python3}
if [ -d .gpu-wheels ]; then
    $PY -m pip install -q --no-deps --no-index .gpu-wheels/*.whl
fi
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
$PY -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
$PY - <<'PY'
import time

import torch

from degaml.generator.decoder import NAMED_DECODERS, HyperConvDecoder

decoder = HyperConvDecoder(NAMED_DECODERS["paper-qwen2.5-0.5b"], (128, 384, 384), (4296, 10, 130), True).cuda()
optimizer = torch.optim.AdamW(decoder.parameters(), lr=3e-5)
condition = torch.randn(4, 128, 384, 384, device="cuda")
target = torch.randn(4, 4296, 10, 130, device="cuda")
seconds = []
for step in range(4):
    torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = ((decoder(condition).float() - target) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize()
    seconds.append(time.perf_counter() - started)
params = sum(p.numel() for p in decoder.parameters())
print(f"paper-size decoder ({params / 1e6:.1f} M parameters), batch 4, bf16 autocast: "
      f"{seconds[-1]:.3f} s per step after warm-up ({', '.join(f'{s:.3f}' for s in seconds)}); "
      f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB on {torch.cuda.get_device_name()}")
PY
