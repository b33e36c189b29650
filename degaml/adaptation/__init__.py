"""The adaptation module (docs/design.md, adaptation): test-time refinements of a generated adapter.

Each family takes the adapter (a PEFT LoRA state dict), the task's unlabelled prompts and a budget,
and returns the adapted result; none of them touches the generator.
"""

from .base import AdaptationResult, BudgetError
from .latent import SlotConfig, optimize_delta, per_sample_scorer
from .mixing import LoraHubConfig, lorahub_search, rank_half_mix
from .policy import Action, LinearPolicy, PolicyConfig, default_actions, train_policy
from .ttt import TTTConfig, apply_ttt

__all__ = [
    "Action",
    "AdaptationResult",
    "apply_ttt",
    "BudgetError",
    "default_actions",
    "LinearPolicy",
    "lorahub_search",
    "LoraHubConfig",
    "optimize_delta",
    "per_sample_scorer",
    "PolicyConfig",
    "rank_half_mix",
    "SlotConfig",
    "train_policy",
    "TTTConfig",
]
