"""What the generator learns from: each task's checkpoint tokens, their per-token weights, its prompts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..lora_tokens import TokenLayout, tokenize
from ..models import LoraState
from .trajectories import TrajectoryManifest, load_checkpoint


@dataclass
class TaskTrajectory:
    task: str
    tokens: torch.Tensor
    """(checkpoints, T, r + 2, chunk + 2): every checkpoint, tokenized."""
    weights: torch.Tensor
    """(T,): how much each token varies across the task's checkpoints, normalized to mean 1."""
    prompts: list[str]
    """Unlabelled prompts of the task (contexts of its train partition, no answers)."""
    adapter: LoraState = field(default_factory=dict)
    """The task's own adapter: the element-wise mean of its checkpoints (A and B averaged separately)."""

    @property
    def mean_tokens(self) -> torch.Tensor:
        return self.tokens.mean(0)


def token_weights(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-element std across checkpoints, normalized by its mean over valid cells, averaged per token."""
    std = tokens.std(0, unbiased=False) * mask
    std = std / std[mask].mean().clamp(min=1e-12)
    return std.sum((-1, -2)) / mask.sum((-1, -2)).clamp(min=1)


def average_states(states: Sequence[LoraState]) -> LoraState:
    """Element-wise mean of LoRA states (A and B averaged separately)."""
    if not states:
        raise ValueError("no adapters to average")
    return {k: torch.stack([s[k].float() for s in states]).mean(0) for k in states[0]}


def check_checkpoint_fits(path: Path, state: dict[str, torch.Tensor], layout: TokenLayout) -> None:
    """Refuse a checkpoint that lacks a tensor of the layout's geometry or holds one of another shape (another
    rank or model), naming the file, the tensor and both shapes."""
    for module in layout.geometry.modules:
        for part, shape in (("A", module.a_shape), ("B", module.b_shape)):
            key = f"base_model.model.{module.path}.lora_{part}.weight"
            if key not in state:
                raise ValueError(f"trajectory checkpoint {path}: tensor {key} is missing")
            if tuple(state[key].shape) != shape:
                raise ValueError(f"trajectory checkpoint {path}: tensor {key} has shape {tuple(state[key].shape)}, "
                                 f"the trajectories' geometry needs {shape} (another rank or model?)")


def load_trajectory(task_dirs: Sequence[Path], layout: TokenLayout, prompts: list[str]) -> TaskTrajectory:
    """One task's trajectories (one directory per collection seed), every checkpoint tokenized."""
    manifests = [TrajectoryManifest.load(d) for d in task_dirs]
    paths = [path for d, m in zip(task_dirs, manifests) for path in m.checkpoint_paths(d)]
    states = [load_checkpoint(path) for path in paths]
    for path, state in zip(paths, states):
        check_checkpoint_fits(path, state, layout)
    tokens = torch.stack([tokenize(state, layout) for state in states])
    return TaskTrajectory(manifests[0].task, tokens, token_weights(tokens, layout.padding_mask()), prompts,
                          average_states(states))


def weighted_masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        weights: torch.Tensor, total_weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over valid cells, each token weighted: prediction/target (B, T, H, W), mask (T, H, W), weights (B, T).
    `total_weight`: the normalizer when these B samples are one share of a larger batch (default: their own)."""
    squared = (prediction - target) ** 2 * mask
    per_token = squared.sum((-1, -2)) / mask.sum((-1, -2)).clamp(min=1)
    total = weights.sum() if total_weight is None else total_weight
    return (per_token * weights).sum() / total.to(per_token.device).clamp(min=1e-12)
