"""How long does turning parameter tokens back into a LoRA take, forward and backward? In a task-loss
generator step it runs once per sample, inside the autograd graph, so its cost is paid every step.

Compares `degaml.lora_tokens.detokenize` (a few tensor ops per matrix) with the per-token definition it
replaced (one slice, scale and copy per token), on the token layouts of SmolLM2-135M (r 8, chunk 128) and
Qwen2.5-0.5B (r 8, chunk 128), built from the models' configs (no weights). Same random tokens for both;
prints seconds per forward + backward (median of --repeats), the ratio and the largest output difference.

    python -m benchmarks.detokenize_speed
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, Qwen2Config

from benchmarks.agreement import machine_line
from degaml.config import LoraSettings
from degaml.lora_tokens import TokenLayout, decode_mean, decode_std, detokenize
from degaml.models import LoraGeometry

CONFIGS = {
    "SmolLM2-135M": LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                                num_key_value_heads=3, vocab_size=49152),
    "Qwen2.5-0.5B": Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                                num_key_value_heads=2, vocab_size=151936),
}


def per_token(tokens: torch.Tensor, layout: TokenLayout) -> dict[str, torch.Tensor]:
    """The definition: every token's valid columns scaled by its statistics and copied into its matrix."""
    r, c = layout.geometry.rank, layout.chunk
    valid = layout.padding_mask()
    copies = valid[:, r, :].sum(-1) + r

    def pooled(row: int, col: int) -> torch.Tensor:
        return ((tokens[:, row, :] * valid[:, row, :]).sum(-1) + tokens[:, :r, col].sum(-1)) / copies

    std = decode_std(pooled(r + 1, c + 1), layout.stat_code)
    mean = decode_mean(pooled(r, c), std, layout.stat_code)
    matrices: dict[str, torch.Tensor] = {}
    for i, slot in enumerate(layout.slots):
        length = slot.module.in_features if slot.part == "A" else slot.module.out_features
        matrix = matrices.setdefault(slot.state_dict_key, tokens.new_zeros(r, length))
        matrix[:, slot.start:slot.start + slot.width] = tokens[i, :r, :slot.width] * std[i].clamp(min=1e-8) + mean[i]
    return {k: (v if ".lora_A." in k else v.T.contiguous()) for k, v in matrices.items()}


def seconds(fn, tokens: torch.Tensor, layout: TokenLayout, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        x = tokens.clone().requires_grad_(True)
        start = time.perf_counter()
        sum((v * v).sum() for v in fn(x, layout).values()).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{machine_line()}\n")
    print("| model | tokens | per-token loop s | detokenize s | speed-up | max difference |")
    print("|---|---|---|---|---|---|")
    for name, config in CONFIGS.items():
        layout = TokenLayout.from_geometry(LoraGeometry.from_config(config, LoraSettings(r=8)), 128, "relative")
        tokens = torch.randn(layout.num_tokens, *layout.token_shape, generator=torch.Generator().manual_seed(0)) * 0.3
        with torch.no_grad():
            new, old = detokenize(tokens, layout), per_token(tokens, layout)
        difference = max((new[k] - old[k]).abs().max().item() for k in old)
        slow, fast = seconds(per_token, tokens, layout, args.repeats), seconds(detokenize, tokens, layout, args.repeats)
        print(f"| {name} | {layout.num_tokens} | {slow:.3f} | {fast:.3f} | {slow / fast:.1f}x | {difference:.1e} |")


if __name__ == "__main__":
    main()
