"""What the generator learns from: each task's checkpoint tokens, their per-token weights, its prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..lora_tokens import TokenLayout, tokenize
from .trajectories import load_checkpoint, read_manifest


@dataclass
class TaskTrajectory:
    task: str
    tokens: torch.Tensor
    """(checkpoints, T, r + 2, chunk + 2): every checkpoint, tokenized."""
    weights: torch.Tensor
    """(T,): how much each token varies across the task's checkpoints, normalized to mean 1."""
    prompts: list[str]
    """Unlabelled prompts of the task (contexts of its train partition, no answers)."""

    @property
    def mean_tokens(self) -> torch.Tensor:
        return self.tokens.mean(0)


def token_weights(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-element std across checkpoints, normalized by its mean over valid cells, averaged per token."""
    std = tokens.std(0, unbiased=False) * mask
    std = std / std[mask].mean().clamp(min=1e-12)
    return std.sum((-1, -2)) / mask.sum((-1, -2)).clamp(min=1)


def load_trajectory(task_dir: Path, layout: TokenLayout, prompts: list[str]) -> TaskTrajectory:
    manifest = read_manifest(task_dir)
    tokens = torch.stack([tokenize(load_checkpoint(task_dir / "checkpoints" / name), layout)
                          for name in manifest["checkpoints"]])
    return TaskTrajectory(manifest["task"], tokens, token_weights(tokens, layout.padding_mask()), prompts)


def weighted_masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    """MSE over valid cells, each token weighted: prediction/target (B, T, H, W), mask (T, H, W), weights (B, T)."""
    squared = (prediction - target) ** 2 * mask
    per_token = squared.sum((-1, -2)) / mask.sum((-1, -2)).clamp(min=1)
    return (per_token * weights).sum() / weights.sum().clamp(min=1e-12)
