"""The baseline registry: `METHODS`, one `Method` per module of `MODULES` (the convention is the package's
docstring), and `run_baseline`."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..io import key_fields
from ..plugins import registry
from . import abmll, lorahub, maml, mean_finetune, no_meta, union, union_finetune
from .common import BaselineJob
from .settings import SETTINGS, BaselineSetup


@dataclass(frozen=True)
class Method:
    name: str
    config: type
    module: Any
    meta_trains: bool
    meta_from: str
    """The meta-training this method's is (its own name, or a shared one: `union` for `union-finetune`)."""
    meta_config: type
    """The settings that determine that meta-training (`META_CONFIG`; all of `config` by default)."""

    @classmethod
    def of(cls, module: Any) -> Method:
        from ..config import first_sentence

        light = SETTINGS.get(module.NAME)
        if light is None or (light.config, light.meta_trains, light.summary) != (
                module.CONFIG, module.META_TRAINS, first_sentence(module.__doc__ or "")):
            raise TypeError(f"baseline module {module.__name__} disagrees with its entry in baselines/settings.py "
                            "SETTINGS (its CONFIG, META_TRAINS and docstring's first sentence are listed there, so that "
                            "settings and --help load without torch)")
        return cls(module.NAME, module.CONFIG, module, module.META_TRAINS, getattr(module, "META_FROM", module.NAME),
                   getattr(module, "META_CONFIG", module.CONFIG))

    def meta_key(self, config: Any, setup: BaselineSetup | None = None) -> str:
        """Names a meta-training by what determines it (its settings and the shared setup's, all but the
        target-side `support` and `steps`), so methods that share one (`union`, `union-finetune`;
        `mean-finetune`, `lorahub`) share its cache, and changed settings never reuse a stale one."""
        determining = {f.name: getattr(config, f.name) for f in fields(self.meta_config)}
        if setup is not None:
            determining["setup"] = {k: v for k, v in key_fields(setup).items() if k not in ("support", "steps")}
        settings = json.dumps(determining, sort_keys=True, default=str)
        return f"{self.meta_from}-{hashlib.sha256(settings.encode()).hexdigest()[:10]}"

    @property
    def option(self) -> str:
        return SETTINGS[self.name].option

    @property
    def has_settings(self) -> bool:
        return SETTINGS[self.name].has_settings


MODULES = registry("baseline", (no_meta, union, union_finetune, maml, abmll, mean_finetune, lorahub),
                   ("META_TRAINS", "meta_train", "finish"))
METHODS = {name: Method.of(module) for name, module in MODULES.items()}
if list(METHODS) != list(SETTINGS):
    raise TypeError(f"baselines/settings.py SETTINGS lists {list(SETTINGS)}, the registry {list(METHODS)}")


def run_baseline(method: str, job: BaselineJob, config: Any, out: Path, progress: bool = True) -> dict[str, Any]:
    """Meta-train (if the method does) and finish on the target; `seconds` counts both."""
    spec = METHODS[method]
    started = time.perf_counter()
    meta = spec.module.meta_train(job, config, progress)
    job.log["meta_train_seconds"] = time.perf_counter() - started
    return spec.module.finish(job, config, meta, out, started)


