"""The family `tts`, test-time scaling: K adapters generated from K different prompt samples, written as an
ensemble whose answers evaluation combines per item (`degaml.evaluation.ensemble`: vote or confidence)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import write_ensemble
from .base import AdaptationContext, check_choice, check_range

NAME = "tts"


@dataclass
class TtsConfig:
    k: int = 3
    combine: str = "vote"

    def __post_init__(self) -> None:
        check_range("tts.k", self.k, 1, 64, integer=True)
        check_choice("tts.combine", self.combine, ("vote", "confidence"))


GRID: list[tuple[dict[str, Any], float]] = [({"k": 3, "combine": c}, 3.0) for c in ("vote", "confidence")]

CONFIG = TtsConfig
OUTPUT = "tts"
NEEDS_LIBRARY = False


def apply(ctx: AdaptationContext, config: TtsConfig, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    members = [ctx.generate(ctx.seed + i) for i in range(config.k)]  # a different prompt sample per member
    record = {**info, "seeds": list(range(ctx.seed, ctx.seed + config.k)), "seconds": time.perf_counter() - started,
              "fell_back": False, "reason": ""}
    return write_ensemble(members, ctx.lora, ctx.base_model, out, config.combine, record)
