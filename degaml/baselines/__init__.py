"""The baselines DeGAML is compared with, one module per method with the same interface: a typed config
and `run(job, config, out, progress) -> info`, where `job` (`common.prepare`) holds the base model, the
target's support examples and the meta-training examples, and `out` receives what `degaml evaluate` scores.
Fairness rules: docs/baselines.md."""

from dataclasses import dataclass
from typing import Any

from . import abmll, maml, no_meta, union
from .common import BaselineRun, BaselineSetup, prepare


@dataclass(frozen=True)
class Method:
    config: type
    run: Any
    meta_trains: bool


METHODS = {
    "no-meta": Method(no_meta.NoMetaConfig, no_meta.run, meta_trains=False),
    "union": Method(union.UnionConfig, union.run, meta_trains=True),
    "maml": Method(maml.MamlConfig, maml.run, meta_trains=True),
    "abmll": Method(abmll.AbmllConfig, abmll.run, meta_trains=True),
}

__all__ = ["BaselineRun", "BaselineSetup", "METHODS", "Method", "prepare"]
