"""The family `none`: the generated adapter as it is (generalization without adaptation)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import AdaptationContext, AdaptationResult, outcome, write_refined

NAME = "none"


@dataclass
class GeneratedConfig:
    """No hyper-parameters."""


GRID: list[tuple[dict[str, Any], float]] = [({}, 0.0)]

CONFIG = GeneratedConfig
OUTPUT = "plain"
NEEDS_LIBRARY = False


def apply(ctx: AdaptationContext, config: GeneratedConfig, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    state, generated = ctx.generate(ctx.seed)
    unchanged = AdaptationResult(NAME, state, {}, 0.0)
    return write_refined(ctx, out, state, {**generated.to_info(), **info, **outcome(unchanged, started)})
