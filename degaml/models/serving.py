"""What a serving engine needs of an adapter directory, checked statically (no engine is imported).

vLLM (`LLM(..., enable_lora=True)` + `LoRARequest(name, id, path)`) loads a PEFT LoRA directory when:
its `peft_type` is LORA; the rank is one vLLM compiles kernels for (1, 8, 16, 32, 64, 128, 256, 320, 512)
and at most the engine's `--max-lora-rank` (default 16); `bias` is "none"; DoRA is off; there are no
`modules_to_save` (full weights); every tensor is a `lora_A` / `lora_B` weight of a linear module it knows
how to pack (for Llama and Qwen2: the seven projections, packed into qkv_proj and gate_up_proj); tensors
are floating point (vLLM casts them to `lora_dtype`, the model's dtype by default). Every adapter degaml
writes satisfies these (tests/test_generator_pipeline.py checks a generated and a baseline adapter).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from .lora import ADAPTER_WEIGHTS

VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_RANK = 16
VLLM_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_TENSOR = re.compile(r"^base_model\.model\.(.+)\.(?P<proj>\w+)\.lora_(?P<ab>[AB])\.weight$")


def vllm_problems(adapter: Path, max_lora_rank: int = VLLM_DEFAULT_MAX_RANK) -> list[str]:
    """Every reason vLLM would refuse `adapter` (empty when it loads), each naming the field or tensor."""
    adapter = Path(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, not 'LORA'")
    r = config.get("r")
    if r not in VLLM_RANKS:
        problems.append(f"r={r} is not a rank vLLM supports ({', '.join(map(str, VLLM_RANKS))})")
    elif r > max_lora_rank:
        problems.append(f"r={r} exceeds max_lora_rank={max_lora_rank} (start vLLM with --max-lora-rank {r})")
    if config.get("bias", "none") != "none":
        problems.append(f"bias is {config['bias']!r}; vLLM needs 'none'")
    if config.get("use_dora"):
        problems.append("use_dora is true; vLLM does not support DoRA")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']} (full weights) are not supported")
    targets = config.get("target_modules") or []
    unknown = sorted(set(targets) - set(VLLM_PROJECTIONS)) if not isinstance(targets, str) else [targets]
    if unknown:
        problems.append(f"target_modules {unknown} are not projections vLLM packs ({', '.join(VLLM_PROJECTIONS)})")
    for name, tensor in load_file(str(adapter / ADAPTER_WEIGHTS)).items():
        match = _TENSOR.match(name)
        if match is None or match["proj"] not in VLLM_PROJECTIONS:
            problems.append(f"tensor {name!r} is not a lora_A/lora_B weight of a supported projection")
        elif not torch.is_floating_point(tensor):
            problems.append(f"tensor {name!r} has dtype {tensor.dtype}; LoRA weights must be floating point")
        elif tensor.shape[0 if match["ab"] == "A" else 1] != r:
            problems.append(f"tensor {name!r} has shape {tuple(tensor.shape)}, not rank {r}")
    return problems
