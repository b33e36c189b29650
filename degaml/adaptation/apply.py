"""The adaptation families, registered once, and the one entry point that applies an action.

Adding a family is one module following the plug-in convention of `degaml/plugins.py` (`NAME`, `CONFIG`,
`OUTPUT`, `NEEDS_LIBRARY`, `GRID`, `apply`; see `base.py`) and one line in `FAMILIES`; the action space, the
range checks, the policy's grid and `degaml adapt --action` follow.
What each family writes (its `OUTPUT`, an adapted output of `degaml.models.adapted_output`):
- none, ttt, mixing: a PEFT adapter directory;
- latent, scope task: the adapter plus one latent delta for the whole task;
- latent, scope sample: the adapter plus the SLOT settings; evaluation fits a delta per item;
- tts: an ensemble of K adapters generated from K prompt samples.
Every output records the action, the generation info, seconds, and whether the family fell back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import AdaptedOutput
from ..plugins import capability, registry
from . import generated, latent, mixing, tts, ttt
from .base import AdaptationContext

FAMILIES = registry("adaptation family", (generated, ttt, tts, mixing, latent), ("GRID", "apply"))


def apply_action(action: Any, ctx: AdaptationContext, out: Path) -> dict[str, Any]:
    """Apply `action` (an `actions.Action`) and write its result to `out` (atomically). Returns its record.
    A family that writes another kind of output than it declares is a bug, refused here."""
    family, config = FAMILIES[action.family], action.config()
    record = family.apply(ctx, config, Path(out), {"action": action.to_dict()})
    written, declared = AdaptedOutput.load(out).kind, capability(family, "OUTPUT", config)
    if written != declared:
        raise RuntimeError(f"adaptation family {action.family!r} wrote a {written!r} output at {out}, "
                           f"not the {declared!r} it declares")
    return record
