"""The baselines DeGAML is compared with, one module per method under the plug-in convention of
`degaml/plugins.py`: `NAME`, `OUTPUT` (all write plain adapters), `NEEDS_LIBRARY` (none reads the generator's
training adapters), `META_TRAINS`, a typed `CONFIG` dataclass (its defaults are the method's defaults everywhere),
`meta_train(job, config, progress) -> tensors` (what is learned before the target is known, cacheable per
set of meta-training tasks) and `finish(job, config, tensors, out, started) -> info` (target adaptation and
the output `degaml evaluate` scores). `job` (`common.prepare`) holds the base model, the target's support
examples and the meta-training examples. A module whose meta-training is shared names it in `META_FROM`,
and the settings that determine it in `META_CONFIG` (a run then trains it once for both). Fairness rules:
docs/baselines.md.

Adding a baseline is one module plus one entry in `MODULES`: the `degaml baseline <name>` command and the
`baselines.<name>` section of a run's settings are derived from the registry."""

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
from .common import BaselineJob, BaselineSetup, prepare


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
        """Its settings' name in flags and configs: `--union.steps`, `baselines.union.steps`."""
        return self.name.replace("-", "_")

    @property
    def has_settings(self) -> bool:
        return bool(fields(self.config))

    @property
    def summary(self) -> str:
        """The module docstring's first sentence, for `--help`."""
        from ..config import first_sentence

        return first_sentence(self.module.__doc__ or self.name)


MODULES = registry("baseline", (no_meta, union, union_finetune, maml, abmll, mean_finetune, lorahub),
                   ("META_TRAINS", "meta_train", "finish"))
METHODS = {name: Method.of(module) for name, module in MODULES.items()}


def run_baseline(method: str, job: BaselineJob, config: Any, out: Path, progress: bool = True) -> dict[str, Any]:
    """Meta-train (if the method does) and finish on the target; `seconds` counts both."""
    spec = METHODS[method]
    started = time.perf_counter()
    meta = spec.module.meta_train(job, config, progress)
    job.log["meta_train_seconds"] = time.perf_counter() - started
    return spec.module.finish(job, config, meta, out, started)


__all__ = ["BaselineJob", "BaselineSetup", "METHODS", "Method", "prepare", "run_baseline"]
