"""One plug-in convention for the methods a run compares, PEFT style: one module per method, one registry per
kind. Every method module declares

- `NAME`: its name in configs, flags and reports;
- `CONFIG`: the dataclass of its settings (defaults and range checks, once);
- `OUTPUT`: the kind of adapted output it writes (`degaml.models.adapted_output.Kind`), or a function of its
  config that says;
- `NEEDS_LIBRARY`: whether it reads the adapters of the generator's training tasks, or a function of its config;

and the entry points of its kind: an adaptation family `GRID` (the policy's choices) and
`apply(ctx, config, out, info)`; a baseline `META_TRAINS`, `meta_train(job, config, progress)` and
`finish(job, config, meta, out, started)`. Adding a method is one module and one entry in its kind's registry
(`adaptation/apply.py`, `baselines/__init__.py`); the registry refuses a module that breaks the convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

DECLARED = ("NAME", "CONFIG", "OUTPUT", "NEEDS_LIBRARY")


def registry(kind: str, modules: Sequence[ModuleType], entry_points: Sequence[str]) -> dict[str, ModuleType]:
    """`{NAME: module}`, refused (naming the module and what it lacks) unless every module follows the convention."""
    found: dict[str, ModuleType] = {}
    for module in modules:
        missing = [name for name in (*DECLARED, *entry_points) if not hasattr(module, name)]
        if missing:
            raise TypeError(f"{kind} module {module.__name__} lacks {', '.join(missing)} (the convention of "
                            "degaml/plugins.py)")
        if module.NAME in found:
            raise TypeError(f"{kind} modules {found[module.NAME].__name__} and {module.__name__} share the name "
                            f"{module.NAME!r}")
        found[module.NAME] = module
    return found


def capability(module: ModuleType, name: str, config: Any) -> Any:
    """A declared capability (`OUTPUT`, `NEEDS_LIBRARY`) for this config: a constant, or the module's function of
    its config."""
    value = getattr(module, name)
    return value(config) if callable(value) else value
