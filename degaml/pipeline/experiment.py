"""What a run is: its settings (`Experiment`, read from a config by `degaml run`), its folds, and the small
helpers every stage shares.

A fold is one held-out in-domain task (trained on the meta-training tasks and every other in-domain task),
or `all` (trained on all of them) whose targets are the out-of-domain tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from ..config import DataConfig, LoraSettings, ModelConfig, PartitionConfig, dump_yaml, from_dict
from ..data import task_label
from ..generator.controls import CONTROLS
from ..generator.record import GeneratorTrainConfig
from ..generator.settings import CollectConfig
from .layout import (
    BASE,
    DEGAML,
    DEGAML_K,
    FLOORS,
    GENERATED,
    MEAN,
    ORACLE,
    RETRIEVAL,
    TARGET_FINETUNED,
    UNION_MATCHED,
    SeedRun,
    control_method,
    policy_method,
)
from .settings import BaselineSettings, EvaluationSettings, PolicySettings, TaskSets


@dataclass
class Experiment:
    """Every setting of a `degaml run`, with its default: the command's flags are these fields."""

    name: str = "experiment"
    out: Path = Path("runs/experiment")
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    seeds: list[int] = field(default_factory=lambda: [0])
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    """The same for every seed: seeds vary training, never which items are test items."""
    tasks: TaskSets = field(default_factory=TaskSets)
    collect: CollectConfig = field(default_factory=CollectConfig)
    """Its seed is replaced by each of the run's seeds."""
    generator: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    """Its seed is replaced by each of the run's seeds."""
    policy: PolicySettings = field(default_factory=PolicySettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    holdout: Literal["one_task", "all_targets", "seen"] = "one_task"
    """`one_task` (leave-one-task-out): fold T's generator, floors and baselines' meta-training learn from every
    task but T, its own for `generator.steps` (after the shared generator when `shared_generator_steps` > 0).
    `all_targets`: one generator trained on `tasks.meta_training` alone for `shared_generator_steps` serves every
    fold, and so do the floors and the meta-training: no target is in any training set, and `generator.steps`
    is not used. `seen` (the paper's in-domain reading): one generator trained for `shared_generator_steps` on
    `tasks.meta_training` and the `tasks.train` tasks' own trajectories (their train partitions) serves every
    fold, and so do the floors and the meta-training; targets are scored on their held-out items."""
    floors: list[str] = field(default_factory=lambda: [MEAN, RETRIEVAL])
    """Zero-label floors built from the generator's training data, beside the baselines (`FLOORS` in layout.py):
    mean, retrieval, union-matched."""
    prompt_controls: list[str] = field(default_factory=list)
    """The generated adapter also from prompts that are not the target's (`generator/controls.py`): `swapped`
    (another target's) and `random` (random text), as zero-label methods beside it; so is the retrieval floor
    when the run has it (a lookup's prompt effect, beside the generator's)."""
    task_counts: list[int] = field(default_factory=list)
    """The scaling curve: for each K, one more shared generator (and its union LoRA) trained on the first K of
    `tasks.meta_training` alone, scored as `generated-K-tasks` and `union-K-tasks` on every target (list the
    meta-training tasks in a shuffled order, so that the first K are a mix). Needs `holdout: all_targets`."""
    shared_generator_steps: int = 0
    """> 0: one generator first trains this many steps on `tasks.meta_training` alone (it never sees a target);
    with `holdout: one_task` every fold's generator continues from it for `generator.steps`."""
    ceiling: int | Literal["trajectory"] | None = None
    """The target-finetuned ceiling (the target's own LoRA, from its train labels; in no track): null, none;
    `trajectory`, the adapter of the target's own collected trajectory (what a generator trains on in the seen
    reading); N, a fresh LoRA fine-tuned N steps of `baselines.batch_size` on the target's train partition
    (cycled where it has fewer), as `degaml headroom` trains its own LoRA, so that a verdict's ceiling is the one
    its targets were chosen by."""
    progress: bool = True
    published: Path | None = None
    """A folder `degaml publish` wrote for this experiment (e.g. results/<name>): each seed it holds whole (every
    evaluation of every target) is taken from it, its per-item predictions, costs and stage times copied into
    `out`, instead of computed; a seed it lacks or holds in part is computed. Like `out`, where, not what: not
    saved with the settings."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.published = Path(self.published) if self.published is not None else None
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if self.holdout not in ("one_task", "all_targets", "seen"):
            raise ValueError(f"holdout must be one_task, all_targets or seen, got {self.holdout!r}")
        if self.holdout == "seen" and not (self.shared_generator_steps and self.tasks.train):
            raise ValueError("holdout: seen trains one generator on tasks.meta_training and the tasks.train tasks: "
                             "set shared_generator_steps > 0 and tasks.train")
        if self.shared_generator_steps and not self.tasks.meta_training:
            raise ValueError("shared_generator_steps needs tasks.meta_training: the shared generator trains on "
                             "those alone")
        if self.holdout == "all_targets" and not self.shared_generator_steps:
            raise ValueError("holdout: all_targets trains one generator on the meta-training tasks alone: set "
                             "shared_generator_steps > 0 and tasks.meta_training")
        if self.starts_from_union and not self.shared_generator_steps:
            raise ValueError("collect.start: union starts every trajectory from union LoRA of tasks.meta_training "
                             "(the shared generator's residual base): set shared_generator_steps > 0")
        if self.starts_from_union and self.task_counts:
            raise ValueError("collect.start: union and task_counts: the scaling curve's generators would learn "
                             "changes from a union LoRA of tasks they never train on")
        if self.residual_on_union and not self.generator.residual:
            raise ValueError("generator.residual_base: union needs generator.residual: true")
        if TARGET_FINETUNED in self.floors:
            raise ValueError(f"floors: {TARGET_FINETUNED} is a ceiling, set by `ceiling: trajectory` (its own "
                             "trajectory's adapter) or `ceiling: N` (a fresh N-step LoRA)")
        unknown = sorted(set(self.floors) - set(FLOORS))
        if unknown:
            raise ValueError(f"floors: unknown {unknown}; known: {', '.join(FLOORS)}")
        if self.ceiling is not None and self.ceiling != "trajectory" and (isinstance(self.ceiling, bool) or not
                                                                         isinstance(self.ceiling, int) or self.ceiling < 1):
            raise ValueError(f"ceiling must be null, trajectory or a step count >= 1, got {self.ceiling!r}")
        if UNION_MATCHED in self.floors and not self.residual_on_union:
            raise ValueError(f"floors: {UNION_MATCHED} matches the budget of a generator residual on union LoRA; "
                             "it needs generator.residual_base: union")
        unknown = sorted(set(self.prompt_controls) - set(CONTROLS))
        if unknown:
            raise ValueError(f"prompt_controls: unknown {unknown}; known: {', '.join(CONTROLS)}")
        if "swapped" in self.prompt_controls and len(self.targets) < 2:
            raise ValueError("prompt_controls: swapped needs at least two targets to swap prompts between")
        known = {BASE, GENERATED, DEGAML, *self.floors, *self.baselines.methods, *self.control_methods}
        unknown = sorted(set(self.evaluation.calibrated) - known)
        if unknown:
            raise ValueError(f"evaluation.calibrated: {unknown} are not methods of this run ({', '.join(sorted(known))})")
        known |= {ORACLE, DEGAML_K, *map(policy_method, self.policy.compare)}
        unknown = sorted(set(self.evaluation.generative_methods or []) - known)
        if unknown:
            raise ValueError(f"evaluation.generative_methods: {unknown} are not methods of this run "
                             f"({', '.join(sorted(known))})")
        clash = {task_label(t) for t in self.tasks.reward} & {task_label(t) for t in (*self.tasks.meta_training,
                                                                                   *self.tasks.train, *self.targets)}
        if clash:
            raise ValueError(f"tasks.reward {sorted(clash)} are also training tasks or targets: a reward task is "
                             "never trained on and never a target")
        if self.task_counts and (self.holdout != "all_targets" or not self.residual_on_union):
            raise ValueError("task_counts (the scaling curve) needs holdout: all_targets and a generator residual on "
                             "union LoRA (generator.residual_base: union), whose union LoRA is scored beside it")
        if any(not 0 < k < len(self.tasks.meta_training) for k in self.task_counts):
            raise ValueError(f"task_counts {self.task_counts} must each be between 1 and the "
                             f"{len(self.tasks.meta_training)} meta-training tasks (all of them is the main generator)")
        if self.holdout == "one_task" and self.generator.steps < 1:
            raise ValueError(f"holdout: one_task trains a generator per fold: generator.steps must be >= 1, got "
                             f"{self.generator.steps} (holdout: all_targets shares one generator)")
        for name, config in (("collect", self.collect), ("generator", self.generator)):
            if config.answer_format not in ("loglikelihood", self.answer_format):
                raise ValueError(f"{name}.answer_format: {config.answer_format} disagrees with evaluation.protocol "
                                 f"{self.evaluation.protocol}: a run trains in the format it scores in")
        self.collect = replace(self.collect, answer_format=self.answer_format)
        self.generator = replace(self.generator, answer_format=self.answer_format)
        if not 0 < self.policy.select_examples < self.baselines.support:
            raise ValueError(f"policy.select_examples = {self.policy.select_examples}: DeGAML-k must keep at least "
                             f"one of the baselines.support = {self.baselines.support} examples on each side of "
                             "its selection split")

    @property
    def answer_format(self) -> str:
        """What every LoRA the run trains (trajectories, union and the baselines, the generator's task loss,
        DeGAML-k) learns to produce: the generative protocol's "[B]" when that is the protocol scored, else the
        answer text log-likelihood scores (`both` included)."""
        return "generative" if self.evaluation.protocol == "generative" else "loglikelihood"

    def save(self, path: Path) -> Path:
        """The resolved settings (all but `PLACE_SETTINGS`), as YAML."""
        from ..io import atomic_write_text

        return atomic_write_text(path, dump_yaml({k: v for k, v in vars(self).items() if k not in PLACE_SETTINGS}))

    @classmethod
    def load(cls, run_dir: Path) -> Experiment:
        """The settings of the run in `run_dir`, from its experiment.yaml."""
        import yaml

        path = Path(run_dir) / SETTINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} is not a `degaml run` directory (no {SETTINGS_FILE})")
        try:
            record = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: not readable YAML ({type(e).__name__})") from None
        record = _renamed(record or {})
        loaded = from_dict(cls, {**record, "out": Path(run_dir), "progress": False}, str(path))
        lacking = [f.name for f in fields(cls) if f.name not in (*record, *PLACE_SETTINGS, *ADDED_SETTINGS)]
        if lacking:  # save() writes every setting: a record without some is cut or not one of ours
            raise ValueError(f"{path}: not a whole experiment record (it lacks {', '.join(lacking)})")
        return loaded

    @property
    def ceiling_methods(self) -> list[str]:
        """The target-finetuned ceiling's method, where the run has one."""
        return [] if self.ceiling is None else [TARGET_FINETUNED]

    @property
    def control_methods(self) -> list[str]:
        """The methods of `prompt_controls`: the generated adapter's, then the retrieval floor's."""
        return [*self.controls_of(GENERATED), *self.controls_of(RETRIEVAL)]

    def controls_of(self, subject: str) -> dict[str, str]:
        """{method: prompt control} of `subject`'s prompt controls (GENERATED, or RETRIEVAL when it is a floor)."""
        if subject == RETRIEVAL and RETRIEVAL not in self.floors:
            return {}
        return {control_method(c, subject): c for c in self.prompt_controls}

    @property
    def all_targets_out(self) -> bool:
        return self.holdout == "all_targets"

    @property
    def one_generator(self) -> bool:
        """One shared generator serves every fold (`all_targets` and `seen`), instead of one per fold."""
        return self.holdout in ("all_targets", "seen")

    @property
    def shared_training(self) -> tuple[str, ...]:
        """What the shared generator, floors and meta-training learn from: the meta-training tasks, and with
        `holdout: seen` the `tasks.train` tasks too."""
        seen = tuple(t for t in self.tasks.train if t not in self.tasks.meta_training) if self.holdout == "seen" else ()
        return tuple(self.tasks.meta_training) + seen

    @property
    def residual_on_union(self) -> bool:
        """`generator.residual_base: union` in a run's config: the run trains union LoRA of each generator's
        training tasks itself (the union baseline's meta-training) and the generator starts there."""
        return self.generator.residual_base == UNION_RESIDUAL_BASE

    @property
    def starts_from_union(self) -> bool:
        """`collect.start: union` in a run's config: every trajectory starts from union LoRA of the meta-training
        tasks, which the run trains first, so that its checkpoints are union plus the task's own change."""
        return self.collect.start == UNION_RESIDUAL_BASE

    @property
    def targets(self) -> list[str]:
        """Every target: in-domain held-out tasks, then out-of-domain ones."""
        return list(dict.fromkeys([*self.tasks.heldout, *self.tasks.out_of_domain]))

    @property
    def all_tasks(self) -> list[str]:
        """Every task the run names: meta-training, in-domain, out-of-domain and reward tasks."""
        return list(dict.fromkeys([*self.tasks.meta_training, *self.tasks.train, *self.targets, *self.tasks.reward]))

    def trained_on(self, fold: Fold) -> Fold:
        """What `fold`'s generator, zero-label floors and meta-trained baselines learn from: the fold itself, or
        with `holdout: all_targets` the shared fold (the meta-training tasks alone), whose generator and
        meta-training then serve every fold alike; with `holdout: seen` the shared fold of the meta-training and
        the `tasks.train` tasks."""
        return Fold(SHARED_FOLD, self.shared_training, fold.targets) if self.one_generator else fold

    def generator_dir(self, seed_run: SeedRun, fold: str) -> Path:
        """The generator that adapts fold `fold`'s targets."""
        return seed_run.generator(SHARED_FOLD if self.one_generator else fold)


SETTINGS_FILE = "experiment.yaml"
"""A run's resolved settings, in its directory."""
ALL_FOLD = "all"
"""The fold trained on every `train` task, whose targets are the out-of-domain ones."""
UNION_RESIDUAL_BASE = "union"
"""`generator.residual_base` and `collect.start` in a run's config: union LoRA of the generator's training tasks
(the union baseline's meta-training, with `baselines.union`'s settings), made by the run itself."""
SHARED_FOLD = "shared"
"""Where the generator trained on the meta-training tasks alone lives (`shared_generator_steps`)."""


@dataclass(frozen=True)
class Fold:
    name: str
    training: tuple[str, ...]
    targets: tuple[str, ...]
    """Task names or task files, as the settings give them (directories use `task_label`)."""


PLACE_SETTINGS = ("out", "progress", "published")
"""Where a run is and how it shows itself, not what it measures: never saved with the settings."""
ADDED_SETTINGS = ("ceiling",)
"""Settings added after runs were first saved: a record without one was made at its default."""


def _renamed(record: dict) -> dict:
    """A saved experiment.yaml in today's names: before `ceiling`, the ceiling was a floor named
    target-finetuned, always its own trajectory's adapter; `policy.algorithm` was `policy.method`."""
    policy = record.get("policy")
    if isinstance(policy, dict) and "method" in policy:
        record = {**record, "policy": {("algorithm" if k == "method" else k): v for k, v in policy.items()}}
    floors = record.get("floors") or []
    if TARGET_FINETUNED not in floors:
        return record
    return {**record, "floors": [f for f in floors if f != TARGET_FINETUNED], "ceiling": "trajectory"}


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
    return DataConfig(tasks=tasks, split=split, limit=limit, partition=exp.partition)  # type: ignore[arg-type]


def say(exp: Experiment, message: str) -> None:
    if exp.progress:
        print(f"[{exp.name}] {message}", flush=True)
