"""The family `mixing`: LoRA mixing, three precisely named variants.

- `rank_half_mix` (the reference's): split one adapter's lora_A into its two rank halves [A1; A2] and mix
  them with a weight lambda: A1' = lam A1 + (1 - lam) A2, A2' = lam A2 + (1 - lam) A1; lora_B unchanged.
  lam = 1 is the identity.
- `prompt_perplexity`: LoraHub's combination and search (Huang et al. 2023) with a label-free objective.
  A weighted sum of the generated adapter and the library's adapters, A = sum_k w_k A_k, B = sum_k w_k B_k,
  the weights searched gradient-free to minimise the language-model loss of the task's *unlabelled prompts*
  plus an L1 penalty. LoraHub proper fits the weights on a few *labelled* examples (the k-label baseline
  `degaml baseline lorahub`); this variant reads no label, hence its name. With one adapter and w = 1 it is
  the identity. The search starts from w = (1, 0, ..., 0), the generated adapter alone, so it can only
  improve on it by the objective's measure.
- `infomax`: the same combination and search with a choice-level label-free objective, InfoMax over the
  unlabelled items' options (`degaml/choice.py`). The prompts' perplexity rewards adapters that make the
  question text likely, which moves every option together; InfoMax rewards confident answers that do not
  all fall on one option position.

Rank-half mixing has no objective: a LoRA's rank components are exchangeable, so lam only mixes two arbitrary
halves. It stays as the reference's variant, for comparison; the policy's default grid still offers it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict

from ..choice import choice_example, collate_choices, infomax_loss, option_distribution
from ..config import LoraSettings
from ..data import MultipleChoiceItem
from ..models import LoadedModel, LoraState, attach_lora
from ..models.mixture import search_mixture
from .base import (
    AdaptationContext,
    AdaptationResult,
    BudgetError,
    check_choice,
    check_range,
    outcome,
    write_refined,
)
from .ttt import prompt_batch

NAME = "mixing"
SEARCH_PROMPTS = 8
"""Unlabelled prompts in the prompt-perplexity search objective (each evaluation is one forward pass over them)."""


@dataclass
class MixingConfig:
    variant: str = "rank_half"
    lam: float = 0.5
    """rank_half: the mixing weight; 1 is the identity."""
    evaluations: int = 40
    """prompt_perplexity: objective evaluations of the gradient-free weight search."""
    l1: float = 0.05
    """prompt_perplexity: L1 penalty on the weights."""

    def __post_init__(self) -> None:
        check_choice("mixing.variant", self.variant, ("rank_half", "prompt_perplexity", "infomax"))
        check_range("mixing.lam", self.lam, 0, 1)
        check_range("mixing.evaluations", self.evaluations, 1, 10_000, integer=True)
        check_range("mixing.l1", self.l1, 0, 10)


GRID: list[tuple[dict[str, Any], float]] = [
    *(({"variant": "rank_half", "lam": lam}, 0.1) for lam in (0.5, 0.75)),
    ({"variant": "prompt_perplexity", "evaluations": 40}, 40.0),
    ({"variant": "infomax", "evaluations": 40}, 60.0),
]

CONFIG = MixingConfig
OUTPUT = "plain"


def NEEDS_LIBRARY(config: MixingConfig) -> bool:  # noqa: N802 (a capability of the plug-in convention)
    """The searched mixtures (prompt perplexity, InfoMax) mix in the training tasks' adapters."""
    return config.variant != "rank_half"


def rank_half_mix(state: LoraState, lam: float) -> LoraState:
    if not 0 <= lam <= 1:
        raise BudgetError(f"rank-half mixing lambda must be in [0, 1], got {lam}")
    mixed = {}
    for key, value in state.items():
        if ".lora_A." not in key:
            mixed[key] = value.clone()
            continue
        rank = value.shape[0]
        if rank % 2:
            raise ValueError(f"{key}: rank-half mixing needs an even rank, got {rank}")
        first, second = value[: rank // 2], value[rank // 2:]
        mixed[key] = torch.cat([lam * first + (1 - lam) * second, lam * second + (1 - lam) * first])
    return mixed


@dataclass
class LoraHubConfig:
    max_evaluations: int = 40
    l1: float = 0.05
    bound: float = 1.5
    """Each weight is searched in [-bound, bound] (LoraHub's range)."""

    def __post_init__(self) -> None:
        if self.max_evaluations < 1:
            raise BudgetError(f"lorahub.max_evaluations must be >= 1, got {self.max_evaluations}")


def prompt_loss_objective(lm: LoadedModel, lora: LoraSettings, prompts: Sequence[str], max_tokens: int = 256
                          ) -> tuple[Callable[[LoraState], float], Callable[[], None]]:
    """Mean causal-LM loss of `prompts` under an adapter (label-free), and a function that detaches the LoRA."""
    model = attach_lora(lm.model, lora)
    model.eval()
    batch = prompt_batch(lm, list(prompts), max_tokens)

    def objective(state: LoraState) -> float:
        set_peft_model_state_dict(model, state)
        with torch.no_grad():
            return float(model(**batch).loss)

    def close() -> None:
        model.unload()
        lm.model.eval()

    return objective, close


def infomax_objective(lm: LoadedModel, lora: LoraSettings, items: Sequence[MultipleChoiceItem], max_tokens: int = 256
                      ) -> tuple[Callable[[LoraState], float], Callable[[], None]]:
    """InfoMax over the unlabelled items' options under an adapter (`degaml/choice.py`: confident answers that
    do not all fall on one option position), and a function that detaches the LoRA."""
    model = attach_lora(lm.model, lora)
    model.eval()
    batch = collate_choices(lm, [choice_example(lm, item, max_tokens) for item in items])

    def objective(state: LoraState) -> float:
        set_peft_model_state_dict(model, state)
        with torch.no_grad():
            return float(infomax_loss(option_distribution(model, batch)))

    def close() -> None:
        model.unload()
        lm.model.eval()

    return objective, close


def lorahub_search(states: Sequence[LoraState], objective: Callable[[LoraState], float], config: LoraHubConfig
                   ) -> AdaptationResult:
    """`models.mixture.search_mixture` from the first adapter alone (the generated one), as an adaptation result."""
    start = time.perf_counter()
    found = search_mixture(states, objective, config.max_evaluations, config.l1, config.bound)
    return AdaptationResult("prompt_perplexity", found.state, {**asdict(config), "weights": found.weights},
                            time.perf_counter() - start, fell_back=found.fell_back,
                            reason="no finite objective" if found.fell_back else "", trace=found.trace)


def apply(ctx: AdaptationContext, config: MixingConfig, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    state, generated = ctx.generate(ctx.seed)
    if config.variant == "rank_half":
        t0 = time.perf_counter()
        result = AdaptationResult(NAME, rank_half_mix(state, config.lam), asdict(config), time.perf_counter() - t0)
        return write_refined(ctx, out, result.state, {**generated.to_info(), **info, **outcome(result, started)})
    if config.variant == "infomax":
        if not ctx.items:
            raise BudgetError("mixing variant=infomax needs the task's unlabelled items with their options")
        objective, close = infomax_objective(ctx.lm, ctx.lora, ctx.items[:SEARCH_PROMPTS])
    else:
        objective, close = prompt_loss_objective(ctx.lm, ctx.lora, ctx.prompts[:SEARCH_PROMPTS])
    try:
        result = lorahub_search([state, *ctx.library], objective,
                                LoraHubConfig(max_evaluations=config.evaluations, l1=config.l1))
    finally:
        close()
    record = {**generated.to_info(), **info, **outcome(result, started), "weights": result.hyperparameters["weights"],
              "library_size": len(ctx.library)}
    return write_refined(ctx, out, result.state, record)
