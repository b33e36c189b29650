"""The adaptation module (docs/design.md, adaptation): test-time refinements of a generated adapter.

Each family (generated = `none`, ttt, tts, mixing, latent) is one module with `NAME`, `Config`, `GRID` and
`apply`, registered in `apply.FAMILIES`; none of them touches the generator.
"""

from . import generated, latent, mixing, tts, ttt
from .actions import Action, default_actions
from .apply import FAMILIES, apply_action
from .base import AdaptationContext, AdaptationResult, BudgetError
from .latent import optimize_delta, per_sample_scorer
from .mixing import LoraHubConfig, lorahub_search, rank_half_mix
from .policy import LinearPolicy, PolicyConfig, train_policy
from .ttt import apply_ttt

__all__ = [
    "FAMILIES",
    "Action",
    "AdaptationContext",
    "AdaptationResult",
    "BudgetError",
    "LinearPolicy",
    "LoraHubConfig",
    "PolicyConfig",
    "apply_action",
    "apply_ttt",
    "default_actions",
    "generated",
    "latent",
    "lorahub_search",
    "mixing",
    "optimize_delta",
    "per_sample_scorer",
    "rank_half_mix",
    "train_policy",
    "ttt",
    "tts",
]
