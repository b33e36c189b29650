"""The family `tts`, test-time scaling: K generated adapters written as an ensemble whose answers evaluation
combines per item (`degaml.evaluation.ensemble`: vote or confidence). The members (`members`) come from K
prompt samples of the whole pool (`samples`; with 16 of 32 prompts each they overlap and barely differ) or
from K disjoint parts of it (`disjoint`: no prompt in two members)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models import write_ensemble
from .base import AdaptationContext, BudgetError, Refinement, check_choice, check_range

NAME = "tts"


@dataclass
class TtsConfig:
    k: int = 3
    combine: str = "vote"
    members: str = "samples"
    """samples | disjoint (the module's docstring)."""

    def __post_init__(self) -> None:
        check_range("tts.k", self.k, 1, 64, integer=True)
        check_choice("tts.combine", self.combine, ("vote", "confidence"))
        check_choice("tts.members", self.members, ("samples", "disjoint"))


GRID: list[tuple[dict[str, Any], float]] = [
    *(({"k": 3, "combine": c}, 3.0) for c in ("vote", "confidence")),
    ({"k": 3, "combine": "confidence", "members": "disjoint"}, 3.0),
]

CONFIG = TtsConfig
OUTPUT = "tts"
NEEDS_LIBRARY = False


def apply(ctx: AdaptationContext, config: TtsConfig, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    seeds = list(range(ctx.seed, ctx.seed + config.k))
    if config.members == "disjoint":
        if len(ctx.prompts) < config.k:
            raise BudgetError(f"tts with {config.k} disjoint members needs at least {config.k} prompts, "
                              f"got {len(ctx.prompts)}")
        order = torch.randperm(len(ctx.prompts), generator=torch.Generator().manual_seed(ctx.seed)).tolist()
        generated = [ctx.generate(seed, order[i::config.k]) for i, seed in enumerate(seeds)]
    else:
        generated = [ctx.generate(seed) for seed in seeds]  # a different prompt sample per member
    members = [(state, record.to_info()) for state, record in generated]
    record = {**info, "seeds": seeds, "member_prompts": config.members,
              **Refinement(time.perf_counter() - started).to_info()}
    return write_ensemble(members, ctx.lora, ctx.base_model, out, config.combine, record)
