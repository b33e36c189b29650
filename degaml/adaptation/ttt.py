"""The family `ttt`, test-time training: a few LoRA optimizer steps on the task's unlabelled prompts with
the causal-LM loss (the prompts' own perplexity); padding is masked and steps are optimizer steps."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import LoraSettings
from ..models import LoadedModel, LoraState, lora_state, peft_model
from ..sft import train_lora
from .base import AdaptationContext, AdaptationResult, BudgetError, check_range, outcome, write_refined

NAME = "ttt"


@dataclass
class TttConfig:
    steps: int = 5
    lr: float = 1e-5
    batch_size: int = 4
    max_tokens: int = 256

    def __post_init__(self) -> None:
        check_range("ttt.steps", self.steps, 0, 1000, integer=True)
        check_range("ttt.lr", self.lr, 0, 1, open_low=True)
        check_range("ttt.batch_size", self.batch_size, 1, 4096, integer=True)
        check_range("ttt.max_tokens", self.max_tokens, 1, 1_000_000, integer=True)


GRID: list[tuple[dict[str, Any], float]] = [({"steps": 5, "lr": lr}, 15.0) for lr in (1e-5, 1e-4)]
"""Costs are rough multiples of one forward pass over the adaptation prompts (an optimizer step counts 3)."""

CONFIG = TttConfig
OUTPUT = "plain"
NEEDS_LIBRARY = False


def prompt_batch(lm: LoadedModel, prompts: Sequence[str], max_tokens: int) -> dict[str, torch.Tensor]:
    encoded = [lm.encode(p)[-max_tokens:] for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, :len(e)], mask[i, :len(e)] = torch.tensor(e), 1
    labels = ids.masked_fill(mask == 0, -100)  # no loss on padding
    return {"input_ids": ids.to(lm.device), "attention_mask": mask.to(lm.device), "labels": labels.to(lm.device)}


def apply_ttt(lm: LoadedModel, state: LoraState, lora: LoraSettings, prompts: Sequence[str],
              config: TttConfig, seed: int = 0) -> AdaptationResult:
    """Refine `state` on `prompts`. The base model is left as it was found (the LoRA layers are removed)."""
    if not prompts:
        raise BudgetError("test-time training needs at least one unlabelled prompt")
    start = time.perf_counter()
    sampler = torch.Generator().manual_seed(seed)

    def next_batch() -> dict[str, torch.Tensor]:
        picks = torch.randint(len(prompts), (config.batch_size,), generator=sampler).tolist()
        return prompt_batch(lm, [prompts[i] for i in picks], config.max_tokens)

    with peft_model(lm, lora, state) as model:
        try:
            trace = train_lora(model, next_batch, config.steps, config.lr)
        except FloatingPointError as e:
            return AdaptationResult("ttt", state, asdict(config), time.perf_counter() - start, fell_back=True,
                                    reason=str(e))
        adapted = lora_state(model)
    return AdaptationResult("ttt", adapted, asdict(config), time.perf_counter() - start, trace=trace)


def apply(ctx: AdaptationContext, config: TttConfig, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    state, generated = ctx.generate(ctx.seed)
    result = apply_ttt(ctx.lm, state, ctx.lora, ctx.prompts, config, ctx.seed)
    return write_refined(ctx, out, result.state, {**generated, **info, **outcome(result, started)})
