"""The settings of a whole experiment (`degaml run --config configs/<name>.yaml`), one typed section per
stage. jsonargparse reads the YAML into these dataclasses, so a misspelt key or a wrong type is an error
that names it."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Literal

from ..baselines.settings import SETTINGS
from ..config import IN_DOMAIN_TASKS
from ..data.tasks import OUT_OF_DOMAIN_TASKS


def _at_least(section: str, settings: object, **minimums: int) -> None:
    """Refuse a setting below its minimum, naming it as a config spells it (`evaluation.limit`)."""
    for name, minimum in minimums.items():
        value = getattr(settings, name)
        if value < minimum:
            raise ValueError(f"{section}.{name} must be >= {minimum}, got {value}")


def _check_window(section: str, max_length: int | None) -> None:
    """A per-option scoring window: at least 2 tokens (one of context, one of answer), or null."""
    if max_length is not None and max_length < 2:
        raise ValueError(f"{section}.max_length must be >= 2 tokens or null (the model's window), got {max_length}")


@dataclass
class TaskSets:
    meta_training: list[str] = field(default_factory=list)
    """Tasks every fold trains on and none targets (e.g. the extra tasks of `degaml list-tasks`); the
    generator, the baselines' meta-training and the zero-label floors all learn from them."""
    train: list[str] = field(default_factory=lambda: list(IN_DOMAIN_TASKS))
    """In-domain tasks: each fold trains on all of them but its target. Trajectories are collected for these
    and `meta_training`."""
    heldout: list[str] = field(default_factory=lambda: ["arc_easy", "boolq"])
    """In-domain targets, each left out of its own generator, policy and baselines (leave-one-task-out)."""
    out_of_domain: list[str] = field(default_factory=lambda: list(OUT_OF_DOMAIN_TASKS))
    """Targets for the generator, policy and baselines trained on every `train` task."""
    reward: list[str] = field(default_factory=list)
    """The policy's reward tasks: never a target, never trained on by a generator or a baseline; each adapted by
    the generator that serves the fold and scored on its validation partition. Empty: every fold's policy learns
    from the other in-domain folds' targets (nested leave-one-out)."""


@dataclass
class PolicySettings:
    actions: list[str] | None = None
    """Action labels to consider (`degaml adapt --help` lists the families); null for the full default space."""
    max_tasks: int = 5
    """Reward tasks of a fold's policy: the other in-domain folds' targets, each adapted by a generator that
    never trained on it (nested leave-one-out; the fold's own training tasks, in-sample, when it is alone)."""
    validation_limit: int = 64
    algorithm: Literal["reinforce", "rest_em"] = "reinforce"
    """The policy's learning rule (`adaptation.policy.PolicyConfig.algorithm`)."""
    compare: list[Literal["reinforce", "rest_em"]] = field(default_factory=list)
    """Further learning rules, each fitted on the same rewards as `algorithm` and applied to every target as the
    method `degaml-<algorithm>`: the policy's learning rule compared on the same items."""
    epochs: int = 300
    lr: float = 0.05
    cost_penalty: float = 0.0
    adaptation_prompts: int = 32
    select_examples: int = 4
    """DeGAML-k: of the k support examples, how many are held out to choose between its candidates (the
    generated adapter and the label-free adaptation, each as it is or fine-tuned on the rest)."""
    single_actions: bool = False
    """Also apply each of the actions alone to every target (methods `action-<label>`) and one drawn uniformly
    per target (`random-action`): the policy's comparisons, the best single family and a random choice."""
    max_length: int | None = None
    """Log-likelihood window per option in tokens when scoring the reward tasks' and the oracle's validation
    items (`EvalConfig.max_length`); null: the model's own window. It bounds the policy stage's long-context
    tasks; the verdict's own scoring follows `evaluation.max_length`."""

    def __post_init__(self) -> None:
        _at_least("policy", self, max_tasks=1, validation_limit=1, epochs=1, adaptation_prompts=1, select_examples=1)
        if self.algorithm in self.compare:
            raise ValueError(f"policy.compare: {self.algorithm} is policy.algorithm already (DeGAML itself)")
        _check_window("policy", self.max_length)
        if self.lr <= 0 or self.cost_penalty < 0:
            raise ValueError(f"policy.lr must be > 0 and policy.cost_penalty >= 0, got {self.lr} and {self.cost_penalty}")


@dataclass
class EvaluationSettings:
    limit: int | None = 50
    """Items per target (a seeded subset); null for the whole partition."""
    split: Literal["test", "validation"] = "test"
    """The targets' partition that is scored: `validation` for runs that choose settings, so that the test
    partition stays sealed until the verdict."""
    protocol: Literal["loglikelihood", "generative", "both"] = "loglikelihood"
    """How answers are scored: lm-evaluation-harness's log-likelihood, the paper's generative protocol (lettered
    options, greedy decoding, the first letter named), or both side by side (the report compares them)."""
    batch_size: int = 16
    max_length: int | None = None
    """Log-likelihood scoring's window per option in tokens, the context cut on the left (`EvalConfig.max_length`);
    null: the model's own window."""
    calibrated: list[str] = field(default_factory=list)
    """Methods also reported with label-free calibration (`<method>-calibrated`, degaml/evaluation/calibration.py):
    e.g. [base, union, generated]; each must write a plain adapter (or be the base model)."""
    generative_methods: list[str] | None = None
    """With protocol `both`: the methods also scored in the generative protocol (null: every method). The
    protocols' comparison reads base, union, generated and DeGAML, so a run can generate for those alone."""
    prior_tasks: list[str] = field(default_factory=list)
    """Targets whose score follows an answer prior (e.g. [boolq]): the report's generator comparisons also
    average without them."""

    def __post_init__(self) -> None:
        _at_least("evaluation", self, batch_size=1)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"evaluation.limit must be >= 1 or null (every test item), got {self.limit}")
        _check_window("evaluation", self.max_length)
        if self.split not in ("test", "validation"):
            raise ValueError(f"evaluation.split must be test or validation, got {self.split!r}")
        if self.protocol not in ("loglikelihood", "generative", "both"):
            raise ValueError(f"evaluation.protocol must be loglikelihood, generative or both, got {self.protocol!r}")
        if self.generative_methods is not None and self.protocol != "both":
            raise ValueError(f"evaluation.generative_methods picks the methods scored in both protocols: it needs "
                             f"protocol both, got {self.protocol!r}")
        if self.calibrated and "loglikelihood" not in self.protocols:
            raise ValueError("evaluation.calibrated re-weighs log-likelihood scores: it needs protocol loglikelihood "
                             "or both")

    @property
    def protocols(self) -> list[str]:
        """The protocols scored, the report's primary one first."""
        return ["loglikelihood", "generative"] if self.protocol == "both" else [self.protocol]

    def scores(self, method: str, protocol: str) -> bool:
        """Whether `method` is scored in `protocol`: with `both`, the generative one takes `generative_methods`."""
        if self.protocol == "both" and protocol == "generative" and self.generative_methods is not None:
            return method in self.generative_methods
        return protocol in self.protocols


@dataclass
class BaselineBudget:
    methods: list[str] = field(default_factory=lambda: list(SETTINGS))
    support: int = 16
    """k: the labelled target examples every method of the k-label track gets (the same ones; DeGAML-k too).
    The zero-label track reads none."""
    steps: int = 10
    lr: float = 1e-3
    batch_size: int = 4
    meta_examples: int = 128
    max_tokens: int = 256
    """Supervised examples are cut to this many tokens (long BoolQ passages dominate training time)."""

    def __post_init__(self) -> None:
        _at_least("baselines", self, support=1, steps=0, batch_size=1, meta_examples=1, max_tokens=1)
        if self.lr <= 0:
            raise ValueError(f"baselines.lr must be > 0, got {self.lr}")


# The shared budget plus one section per registered baseline with settings (`baselines.union.steps`, ...).
BaselineSettings = make_dataclass(
    "BaselineSettings",
    [(m.option, m.config, field(default_factory=m.config)) for m in SETTINGS.values() if m.has_settings],
    bases=(BaselineBudget,))
BaselineSettings.__module__ = __name__
BaselineSettings.__doc__ = "Which baselines run, their shared target-data budget, and each one's own settings."
