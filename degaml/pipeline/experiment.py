"""What a run is: its settings (`Experiment`, read from a config by `degaml run`), its folds, and the small
helpers every stage shares.

A fold is one held-out in-domain task (trained on the meta-training tasks and every other in-domain task),
or `all` (trained on all of them) whose targets are the out-of-domain tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig, LoraSettings
from ..data import task_label
from ..generator.card import GeneratorTrainConfig
from ..generator.trajectories import CollectConfig
from .layout import SeedRun
from .settings import BaselineSettings, EvaluationSettings, PolicySettings, TaskSets


@dataclass
class Experiment:
    name: str
    out: Path
    model: str
    lora: LoraSettings
    seeds: list[int]
    partition_seed: int
    source: str
    dtype: str
    device: str
    tasks: TaskSets
    collect: CollectConfig
    """Its seed is replaced by each of the run's seeds."""
    generator: GeneratorTrainConfig
    """Its seed is replaced by each of the run's seeds."""
    policy: PolicySettings
    evaluation: EvaluationSettings
    baselines: BaselineSettings
    shared_generator_steps: int = 0
    """> 0: one generator first trains this many steps on `tasks.meta_training` alone (it never sees a target),
    and every fold's generator continues from it for `generator.steps` (with `generator.steps` 0, every fold
    uses it as it is: leave-all-targets-out, one generator for all); 0: each fold's trains from scratch."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.shared_generator_steps and not self.tasks.meta_training:
            raise ValueError("shared_generator_steps needs tasks.meta_training: the shared generator trains on "
                             "those alone")
        if self.generator.steps == 0 and not self.shared_generator_steps:
            raise ValueError("generator.steps is 0: folds train no generator of their own, so they need the "
                             "shared one (shared_generator_steps > 0 and tasks.meta_training)")
        if not 0 < self.policy.select_examples < self.baselines.support:
            raise ValueError(f"policy.select_examples = {self.policy.select_examples}: DeGAML-k must keep at least "
                             f"one of the baselines.support = {self.baselines.support} examples on each side of "
                             "its selection split")

    def trained_on(self, fold: Fold) -> Fold:
        """What `fold`'s generator, zero-label floors and meta-trained baselines learn from: the fold itself,
        or, when folds train no generator steps of their own, the shared fold (the meta-training tasks alone),
        whose generator and meta-training then serve every fold alike."""
        return fold if self.generator.steps else Fold(SHARED_FOLD, tuple(self.tasks.meta_training), fold.targets)

    def generator_dir(self, run: SeedRun, fold: str) -> Path:
        """The generator that adapts fold `fold`'s targets."""
        return run.generator(fold if self.generator.steps else SHARED_FOLD)


ALL_FOLD = "all"
"""The fold trained on every `train` task, whose targets are the out-of-domain ones."""
UNION_RESIDUAL_BASE = "union"
"""`generator.residual_base` in a run's config: union LoRA of the generator's training tasks (the union
baseline's meta-training, with `baselines.union`'s settings), made by the run itself."""
SHARED_FOLD = "shared"
"""Where the generator trained on the meta-training tasks alone lives (`shared_generator_steps`)."""


@dataclass(frozen=True)
class Fold:
    name: str
    training: tuple[str, ...]
    targets: tuple[str, ...]
    """Task names or task files, as the settings give them (directories use `task_label`)."""


def folds(tasks: TaskSets) -> list[Fold]:
    meta, train = tuple(tasks.meta_training), tuple(tasks.train)
    labels = {task_label(t) for t in train}
    clash = {task_label(t) for t in meta} & {task_label(t) for t in train + tuple(tasks.heldout)
                                             + tuple(tasks.out_of_domain)}
    if clash:
        raise ValueError(f"tasks.meta_training {sorted(clash)} are also in-domain tasks or targets: every fold "
                         "trains on the meta-training tasks, so none may be a target")
    result = [Fold(task_label(t), meta + tuple(x for x in train if task_label(x) != task_label(t)), (t,))
              for t in tasks.heldout if task_label(t) in labels]
    rest = tuple(tasks.out_of_domain) + tuple(t for t in tasks.heldout if task_label(t) not in labels)
    if rest:
        result.append(Fold(ALL_FOLD, meta + train, rest))
    return result


def split_data(exp: Experiment, tasks: list[str], split: str, limit: int | None) -> DataConfig:
    return DataConfig(tasks=tasks, split=split, limit=limit, partition_seed=exp.partition_seed, source=exp.source)  # type: ignore[arg-type]


def say(exp: Experiment, message: str) -> None:
    if exp.progress:
        print(f"[{exp.name}] {message}", flush=True)
