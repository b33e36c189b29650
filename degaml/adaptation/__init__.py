"""The adaptation module (docs/design.md, adaptation): test-time refinements of a generated adapter.

Each family (generated = `none`, ttt, tts, mixing, latent) is one module with `NAME`, `Config`, `GRID` and
`apply`, registered in `apply.FAMILIES`; none of them touches the generator.
"""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    'generated': ('generated',),
    'latent': ('latent', 'optimize_delta', 'per_sample_scorer'),
    'mixing': ('mixing', 'LoraHubConfig', 'lorahub_search', 'rank_half_mix'),
    'tts': ('tts',),
    'ttt': ('ttt', 'apply_ttt'),
    'actions': ('Action', 'default_actions'),
    'apply': ('FAMILIES', 'apply_action'),
    'base': ('AdaptationContext', 'AdaptationResult', 'BudgetError'),
    'policy': ('LinearPolicy', 'PolicyConfig'),
})
