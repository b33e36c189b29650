"""The baselines' typed settings, torch-free (`degaml baseline <name> --help` and a run's `baselines` section are
built from them without loading torch): the setup every baseline shares, and each method's own settings. Each
method module names its class as `CONFIG`; the registry (`baselines/__init__.py`) checks that it is this one."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from ..config import AnswerFormat, LoraSettings, ModelConfig, PartitionConfig


@dataclass
class BaselineSetup:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    support: int = 64
    """Labelled target examples (seeded subset of its train partition), the same for every method."""
    steps: int = 20
    """Test-time optimizer steps on the support examples, the same for every method."""
    lr: float = 1e-3
    """Learning rate of supervised fine-tuning on the support set."""
    batch_size: int = 8
    meta_examples: int = 512
    """Labelled examples per meta-training task (seeded subset of its train partition)."""
    max_tokens: int = 256
    seed: int = 0
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    answer_format: AnswerFormat = "loglikelihood"
    """What every baseline's LoRA learns to produce: the answer text (log-likelihood's format) or the generative
    protocol's "[B]" after the lettered prompt (`degaml run` follows `evaluation.protocol`)."""

    def __post_init__(self) -> None:
        for name in ("support", "batch_size", "meta_examples", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"setup.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"setup.steps must be >= 0, got {self.steps}")


@dataclass
class NoMetaConfig:
    """No settings beyond the shared setup: its budget is the method."""


@dataclass
class UnionConfig:
    steps: int = 20
    """Optimizer steps on the union (x setup.batch_size examples: the meta-training example budget)."""
    lr: float = 1e-3


@dataclass
class UnionFinetuneConfig(UnionConfig):
    """Union LoRA's settings (its meta-training); the target fine-tune is the setup's `steps` at `lr`."""


@dataclass
class MamlConfig:
    order: Literal[1, 2] = 1
    meta_steps: int = 10
    tasks_per_step: int = 2
    inner_steps: int = 1
    inner_lr: float = 1e-3
    outer_lr: float = 3e-4
    inner_optimizer: Literal["adam", "sgd"] = "adam"
    """adam: shared moments (the paper); sgd: classic MAML."""
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"maml.order must be 1 or 2, got {self.order}")
        if self.meta_steps < 0 or self.inner_steps < 1 or self.tasks_per_step < 1:
            raise ValueError("maml.meta_steps must be >= 0, inner_steps and tasks_per_step >= 1")


@dataclass
class AbmllConfig:
    meta_steps: int = 10
    tasks_per_step: int = 2
    inner_steps: int = 1
    inner_lr: float = 1e-3
    outer_lr: float = 3e-4
    beta: float = 0.1
    """Weight of KL(q_i || p(theta)) against the reconstruction (per-parameter mean KL)."""
    init_sigma: float = 1e-3
    """Initial prior standard deviation of every LoRA entry."""
    samples: int = 1
    """Posterior samples per loss evaluation during training."""
    eval_samples: int = 3
    """Adapters sampled from the target posterior; their answer probabilities are averaged."""

    def __post_init__(self) -> None:
        if self.beta < 0 or self.init_sigma <= 0 or self.samples < 1 or self.eval_samples < 1:
            raise ValueError("abmll: beta >= 0, init_sigma > 0, samples >= 1 and eval_samples >= 1 are required")


@dataclass
class MeanFinetuneConfig:
    task_steps: int = 10
    """Optimizer steps of each meta-training task's own LoRA (x setup.batch_size examples)."""
    lr: float = 1e-3


@dataclass
class LoraHubBaselineConfig(MeanFinetuneConfig):
    """The library's settings (`task_steps`, `lr`), then the weight search's."""

    evaluations: int = 40
    """Objective evaluations of the weight search (each one forward pass over the support examples)."""
    l1: float = 0.05
    """L1 penalty on the weights."""


@dataclass(frozen=True)
class MethodSettings:
    """What a run's `baselines` section and `degaml baseline <name>`'s flags need of a registered baseline, without
    importing its module (the registry checks the module agrees)."""

    name: str
    config: type
    meta_trains: bool
    summary: str
    """Its module docstring's first sentence, for `--help`."""

    @property
    def option(self) -> str:
        """Its settings' name in flags and configs: `--union.steps`, `baselines.union.steps`."""
        return self.name.replace("-", "_")

    @property
    def has_settings(self) -> bool:
        return bool(fields(self.config))


SETTINGS: dict[str, MethodSettings] = {s.name: s for s in (
    MethodSettings("no-meta", NoMetaConfig, False,
                   "No-meta-train LoRA: a LoRA from PEFT's standard init, trained only on the target's labelled "
                   "support examples (the setup's `support` examples, `steps` optimizer steps at `lr`)."),
    MethodSettings("union", UnionConfig, True,
                   "Union-train LoRA: one LoRA trained on the union of the meta-training tasks' labelled examples "
                   "(tasks sampled uniformly per batch), evaluated zero-shot on the held-out target: no target "
                   "label."),
    MethodSettings("union-finetune", UnionFinetuneConfig, True,
                   "Union LoRA + fine-tune: union LoRA (the same meta-training as `union`) fine-tuned on the "
                   "target's support examples with the same budget as every other k-label method."),
    MethodSettings("maml", MamlConfig, True,
                   "MAML-en-LLM (Sinha et al., KDD 2024, arXiv 2405.11446) over the LoRA parameters."),
    MethodSettings("abmll", AbmllConfig, True,
                   "ABMLL: amortized Bayesian meta-learning for LoRA (Zhang, Snell & Griffiths 2025, arXiv "
                   "2508.14285)."),
    MethodSettings("mean-finetune", MeanFinetuneConfig, True,
                   "Mean adapter + fine-tune: the control that isolates what the generator adds."),
    MethodSettings("lorahub", LoraHubBaselineConfig, True,
                   "Labelled LoraHub (Huang et al. 2023): a weighted sum of per-task LoRAs, A = sum_k w_k A_k and "
                   "B = sum_k w_k B_k, the weights searched gradient-free (bounded Powell, `evaluations` "
                   "evaluations of the objective) to minimise the causal-LM loss of the target's labelled support "
                   "examples (answers only) plus an L1 penalty."),
)}
"""Every registered baseline, in the registry's order."""
