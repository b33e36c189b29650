"""The adaptation families, registered once, and the one entry point that applies an action.

Adding a family is one module with `NAME`, `Config`, `GRID` and `apply` (see `base.py`) and one line in
`FAMILIES`; the action space, the range checks, the policy's grid and `degaml adapt --action` follow.
What each family writes (an adapted output, `degaml.models.adapted_output`):
- none, ttt, mixing: a PEFT adapter directory;
- latent, scope task: the adapter plus one latent delta for the whole task;
- latent, scope sample: the adapter plus the SLOT settings; evaluation fits a delta per item;
- tts: an ensemble of K adapters generated from K prompt samples.
Every output records the action, the generation info, seconds, and whether the family fell back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import generated, latent, mixing, tts, ttt
from .base import AdaptationContext

FAMILIES = {family.NAME: family for family in (generated, ttt, tts, mixing, latent)}


def apply_action(action: Any, ctx: AdaptationContext, out: Path) -> dict[str, Any]:
    """Apply `action` (an `actions.Action`) and write its result to `out` (atomically). Returns its record."""
    return FAMILIES[action.family].apply(ctx, action.config(), Path(out), {"action": action.to_dict()})
