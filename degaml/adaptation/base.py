"""What every adaptation family returns, and how it reports an unmet budget or a fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import LoraState


class BudgetError(ValueError):
    """A budget the family cannot meet; reported, never silently truncated."""


@dataclass
class AdaptationResult:
    family: str
    state: LoraState
    """The adapted LoRA state (the input state when the family fell back)."""
    hyperparameters: dict[str, Any]
    seconds: float
    fell_back: bool = False
    reason: str = ""
    """Why the family fell back to the unadapted adapter (e.g. a non-finite loss)."""
    trace: list[float] = field(default_factory=list)
    """Per-step objective (loss), for inspection."""
