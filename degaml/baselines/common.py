"""What every baseline shares: the setup (base model, LoRA, partitions, the target-data budget), the
supervised examples of each task, plain LoRA fine-tuning, and writing the result with its costs.

Fairness rules (docs/baselines.md): same base model, LoRA rank and targets as DeGAML; same seeded
train/validation/test partitions; every method that uses labelled target data gets the same `support`
examples (from the target's train partition) and the same `steps` of test-time optimization on them;
meta-training methods see the same number of meta-training examples.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..config import DataConfig
from ..data import MultipleChoiceItem, task_label
from ..data.tasks import check_task_names
from ..io import run_metadata
from ..memory import peak_memory_mb
from ..models import LoadedModel, LoraState, load_model, write_adapter
from ..sft import Example, fine_tune, training_example
from .settings import BaselineSetup


def load_examples(lm: LoadedModel, task: str, setup: BaselineSetup, limit: int, budget: str = "") -> list[Example]:
    """Up to `limit` supervised examples from the task's train partition (never validation or test); exactly
    `limit` when they are a track's label `budget` (its setting's name), or an error."""
    return [training_example(lm, item, setup.max_tokens, answer_format=setup.answer_format)
            for item in load_items(task, setup, limit, budget)]


def load_items(task: str, setup: BaselineSetup, limit: int, budget: str = "") -> list[MultipleChoiceItem]:
    """`load_examples`' labelled items, as items (for choice-level losses)."""
    from ..data.prompts import load_partitioned

    data = DataConfig(tasks=[task], split="train", limit=limit, partition=setup.partition)
    ((items, part),) = load_partitioned(data).values()
    selected = part.select(items, "train", limit)
    if not selected:
        raise ValueError(f"task {task!r}: the train partition is empty")
    if budget and len(selected) < limit:  # a track's label budget never shrinks silently
        raise ValueError(f"task {task!r}: {budget} = {limit} labelled examples asked for, its train partition has "
                         f"{len(selected)}; lower {budget} (every method of the track gets the same budget)")
    return selected


def lora_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@dataclass
class BaselineJob:
    """A loaded baseline job: the model, the target's support examples and the meta-training examples."""

    setup: BaselineSetup
    task: str
    train_tasks: list[str]
    lm: LoadedModel
    support: list[Example]
    meta: dict[str, list[Example]]
    log: dict[str, Any] = field(default_factory=dict)
    """Training traces and timings, written with the result."""


def prepare(setup: BaselineSetup, task: str, train_tasks: Sequence[str], needs_meta: bool,
            lm: LoadedModel | None = None, seen: bool = False) -> BaselineJob:
    """Load the model (unless given) and the examples a baseline needs. `seen`: the target may be among the
    training tasks (a run's `holdout: seen`, whose meta-training reads the targets' train partitions; the target
    is still scored on its held-out items)."""
    label = task_label(task)
    names = [t for t in train_tasks if t]
    if not seen and label in {task_label(t) for t in names}:
        raise ValueError(f"--train_tasks includes the target task {label!r}: it must be held out")
    if needs_meta and not names:
        raise ValueError("this baseline meta-trains: give --train_tasks (comma-separated)")
    check_task_names([task], "--task")
    check_task_names(names, "--train_tasks")  # before the model loads
    lm = lm or load_model(setup.model)
    support = load_examples(lm, task, setup, setup.support, "setup.support")
    meta = {task_label(t): load_examples(lm, t, setup, setup.meta_examples) for t in names} if needs_meta else {}
    return BaselineJob(setup, label, [task_label(t) for t in names], lm, support, meta)


@dataclass(frozen=True)
class BaselineRecord:
    """What every baseline's output records of its cost (in its degaml.json, beside its setup, settings and
    traces), read back through this class."""

    seconds: float
    """Meta-training (when the method did it in this call) and the target's finish, wall clock."""
    support_examples: int
    """Labelled target examples read (0 for the zero-label union)."""
    target_steps: int
    """Optimizer steps on the target's examples."""
    peak_rss_mb: float

    @classmethod
    def from_info(cls, info: dict[str, Any], where: str = "degaml.json") -> BaselineRecord:
        missing = [f.name for f in fields(cls) if f.name not in info]
        if missing:
            raise ValueError(f"{where}: a baseline's record lacks {', '.join(missing)}")
        return cls(**{f.name: info[f.name] for f in fields(cls)})


def write_result(job: BaselineJob, method: str, config: Any, state: LoraState, out: Path, started: float,
                 record: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    info = {"baseline": method, "task": job.task, "train_tasks": job.train_tasks, "setup": asdict(job.setup),
            "config": asdict(config) if config is not None else {}, "support_examples": len(job.support),
            "target_steps": 0,
            "seconds": time.perf_counter() - started, **peak_memory_mb(job.lm.device), **job.log, **record,
            "meta": run_metadata(job.setup.seed, job.lm.compute())}
    write_adapter(state, job.setup.lora, job.setup.model.name, out, info, tensors=tensors)
    return info



def finish_by_fine_tuning(job: BaselineJob, method: str, config: Any, init: LoraState | None, out: Path,
                          started: float, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The k-label finish: fine-tune `init` (or PEFT's init) on the target's support examples with the setup's
    budget, and write the result."""
    s = job.setup
    state, losses = fine_tune(job.lm, s.lora, job.support, s.steps, s.lr, s.batch_size, s.seed, init=init)
    return write_result(job, method, config, state, out, started,
                        {**(record or {}), "support_losses": losses, "target_steps": s.steps})


def stack_library(states: dict[str, LoraState]) -> dict[str, torch.Tensor]:
    """Per-task adapters as one flat tensor dict (a meta-training cache is one safetensors file)."""
    return {f"{task}/{key}": value for task, state in states.items() for key, value in state.items()}


def unstack_library(tensors: dict[str, torch.Tensor]) -> dict[str, LoraState]:
    """`stack_library`'s inverse, tasks in sorted order (safetensors does not keep the writer's order)."""
    library: dict[str, LoraState] = {}
    for name, value in tensors.items():
        task, key = name.split("/", 1)
        library.setdefault(task, {})[key] = value
    return dict(sorted(library.items()))
