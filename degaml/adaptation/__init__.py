"""The adaptation module (DESIGN.md §2.7): test-time refinements of a generated adapter.

Each family takes the adapter (a PEFT LoRA state dict), the task's unlabelled prompts and a budget,
and returns the adapted result; none of them touches the generator.
"""

from .base import AdaptationResult, BudgetError
from .mixing import LoraHubConfig, lorahub_combine, lorahub_search, rank_half_mix
from .ttt import TTTConfig, apply_ttt

__all__ = [
    "AdaptationResult",
    "BudgetError",
    "LoraHubConfig",
    "TTTConfig",
    "lorahub_combine",
    "lorahub_search",
    "rank_half_mix",
    "apply_ttt",
]
