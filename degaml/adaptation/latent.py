"""Latent-space adaptation (SLOT): one vector delta added to the final hidden state, right before the
LM head, optimized for a few AdamW steps on the prompts' next-token loss while every weight stays frozen.

- shared per task (as the reference does): one delta from all of the task's unlabelled prompts;
- per sample (as the SLOT paper does): a fresh delta per item, optimized on that item's own context.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from ..models import LoadedModel
from .base import BudgetError
from .ttt import prompt_batch

LATENT_FILE = "latent_delta.safetensors"
"""Saved beside an adapter; `degaml evaluate --adapter` applies it."""


@dataclass
class SlotConfig:
    steps: int = 5
    lr: float = 0.1
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise BudgetError(f"latent.steps must be >= 0, got {self.steps}")
        if self.lr <= 0:
            raise BudgetError(f"latent.lr must be > 0, got {self.lr}")


@contextmanager
def latent_delta(lm: LoadedModel, delta: torch.Tensor) -> Iterator[None]:
    """Add `delta` to the LM head's input for every forward pass inside the block."""
    head = lm.model.get_output_embeddings()

    def add(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (inputs[0] + delta.to(inputs[0].dtype),)

    handle = head.register_forward_pre_hook(add)
    try:
        yield
    finally:
        handle.remove()


def optimize_delta(lm: LoadedModel, prompts: Sequence[str], config: SlotConfig) -> tuple[torch.Tensor, list[float], float]:
    """(delta, per-step loss, seconds). Only delta receives gradients; the model's weights are untouched."""
    if not prompts:
        raise BudgetError("latent adaptation needs at least one prompt")
    start = time.perf_counter()
    hidden = lm.model.get_output_embeddings().in_features
    delta = torch.zeros(hidden, device=lm.device, requires_grad=True)
    optimizer = torch.optim.AdamW([delta], lr=config.lr)
    batch = prompt_batch(lm, list(prompts), config.max_tokens)
    requires = [p.requires_grad for p in lm.model.parameters()]
    for p in lm.model.parameters():
        p.requires_grad_(False)
    trace: list[float] = []
    try:
        with latent_delta(lm, delta):
            for _ in range(config.steps):
                loss = lm.model(**batch).loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite latent loss at step {len(trace) + 1}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                trace.append(loss.item())
    finally:
        for p, r in zip(lm.model.parameters(), requires):
            p.requires_grad_(r)
    return delta.detach(), trace, time.perf_counter() - start


def slot_hyperparameters(config: SlotConfig, scope: str) -> dict:
    return {**asdict(config), "scope": scope}
