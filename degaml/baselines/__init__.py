"""The baselines DeGAML is compared with, one module per method with the same interface: a typed config,
`meta_train(job, config, progress) -> tensors` (what is learned before the target is known, cacheable per
set of meta-training tasks) and `finish(job, config, tensors, out, started) -> info` (target adaptation and
the output `degaml evaluate` scores). `job` (`common.prepare`) holds the base model, the target's support
examples and the meta-training examples. Fairness rules: docs/baselines.md."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import abmll, maml, no_meta, union
from .common import BaselineRun, BaselineSetup, prepare


@dataclass(frozen=True)
class Method:
    config: type
    module: Any
    meta_trains: bool


METHODS = {
    "no-meta": Method(no_meta.NoMetaConfig, no_meta, meta_trains=False),
    "union": Method(union.UnionConfig, union, meta_trains=True),
    "maml": Method(maml.MamlConfig, maml, meta_trains=True),
    "abmll": Method(abmll.AbmllConfig, abmll, meta_trains=True),
}


def run_baseline(method: str, job: BaselineRun, config: Any, out: Path, progress: bool = True) -> dict[str, Any]:
    """Meta-train (if the method does) and finish on the target; `seconds` counts both."""
    spec = METHODS[method]
    started = time.perf_counter()
    meta = spec.module.meta_train(job, config, progress)
    job.log["meta_train_seconds"] = time.perf_counter() - started
    return spec.module.finish(job, config, meta, out, started)


__all__ = ["BaselineRun", "BaselineSetup", "METHODS", "Method", "prepare", "run_baseline"]
