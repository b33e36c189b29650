"""Does the generator's output depend on the task? Measured on generated tokens and decoded adapters.

- variance ratio: between-task variance of the generated tokens (across task means) over within-task
  variance (across fresh draws of the same task's prompts). Near 0: one adapter for every task.
- nearest-centroid accuracy: a task's identity recovered from a generated adapter by the nearest of the
  task centroids built from other prompt draws (chance = 1 / tasks).
- per task: the decoded adapter's dW norm, its cosine to the task's own adapter and to the mean adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..lora_tokens import TokenLayout, detokenize
from ..models import LoraState, delta_cosine, delta_norm


def variance_ratio(samples: torch.Tensor, mask: torch.Tensor) -> float:
    """samples (tasks, draws, T, H, W), mask (T, H, W) -> between-task / within-task variance."""
    samples = samples * mask
    within = samples.var(1, unbiased=False).sum((-1, -2, -3)).mean()
    between = samples.mean(1).var(0, unbiased=False).sum()
    return float(between / within.clamp(min=1e-30))


def centroid_accuracy(samples: torch.Tensor, mask: torch.Tensor) -> float:
    """samples (tasks, draws >= 2, T, H, W): centroids from all draws but the last; the last is the query."""
    flat = (samples * mask).flatten(2)
    centroids, queries = flat[:, :-1].mean(1), flat[:, -1]
    nearest = torch.cdist(queries[None].double(), centroids[None].double())[0].argmin(1)
    return float((nearest == torch.arange(len(flat))).float().mean())


def adapter_similarity(generated: LoraState, own: LoraState | None, mean: LoraState) -> dict[str, float]:
    result = {"delta_norm": delta_norm(generated), "cosine_to_mean": delta_cosine(generated, mean)}
    if own is not None:
        result["cosine_to_own"] = delta_cosine(generated, own)
    return result


def task_dependence(samples: torch.Tensor, names: Sequence[str], layout: TokenLayout, mask: torch.Tensor,
                    own: Sequence[LoraState | None], mean: LoraState, group: str) -> dict[str, float]:
    """Every diagnostic for one group of tasks, as flat log keys (`<group>/...`)."""
    record: dict[str, float] = {}
    if len(names) >= 2:
        record[f"{group}/variance_ratio"] = variance_ratio(samples, mask)
        record[f"{group}/centroid_accuracy"] = centroid_accuracy(samples, mask)
    for name, draws, own_state in zip(names, samples, own):
        for key, value in adapter_similarity(detokenize(draws[0], layout), own_state, mean).items():
            record[f"{group}/{name}/{key}"] = value
    return record
