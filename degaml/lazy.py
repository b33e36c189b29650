"""Lazy re-exports for a package's `__init__`: `from degaml.models import load_model` works as before, but
importing the package (or one light submodule of it, such as `degaml.models.registry`) loads no heavy
submodule, so that a command's `--help` builds without torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable


def lazy_exports(package: str, exports: dict[str, Iterable[str]]) -> tuple[Callable[[str], object], list[str]]:
    """(`__getattr__`, `__all__`) for `package`: `exports` maps each submodule to the names it provides (a
    submodule exported as itself names itself). A name is imported from its submodule on first use."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{where[name]}")
        return module if name == where[name] else getattr(module, name)

    return __getattr__, sorted(where)
