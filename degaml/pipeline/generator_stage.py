"""The generalization module's stages: trajectories of the training tasks (collect), then the generators
(one shared on the meta-training tasks, and one per fold under `holdout: one_task`), each residual on its
base adapter."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..data import task_label
from ..io import cache_root
from ..models import LoadedModel, write_adapter
from ..models.lora import ADAPTER_WEIGHTS
from .baseline_stage import meta_trained
from .experiment import SHARED_FOLD, Experiment, Fold, say, split_data
from .layout import TARGET_FINETUNED, SeedRun


def collect_stage(exp: Experiment, lm: LoadedModel, run: SeedRun) -> None:
    from ..generator.trajectories import collect_tasks

    # Leaving all targets out, nothing trains on the in-domain tasks' adapters. Targets' own trajectories are
    # collected only for the target-finetuned ceiling; every generator holds them out.
    tasks = list(exp.tasks.meta_training) + ([] if exp.all_targets_out else list(exp.tasks.train))
    if TARGET_FINETUNED in exp.floors:
        tasks += [t for t in exp.targets if t not in tasks]
    collect_tasks(lm, exp.model.name, split_data(exp, tasks, "train", None), run.trajectories,
                  exp.lora, replace(exp.collect, seed=run.seed), exp.progress, cache=cache_root() / "trajectories")


def shared_fold(exp: Experiment, count: int | None = None) -> Fold:
    """The generator trained on the meta-training tasks alone (`shared_generator_steps`), or on the first `count`
    of them (`task_counts`, the scaling curve)."""
    if count is None:
        return Fold(SHARED_FOLD, tuple(exp.tasks.meta_training), tuple(exp.targets))
    return Fold(f"{SHARED_FOLD}-{count}", tuple(exp.tasks.meta_training[:count]), tuple(exp.targets))


def scaling_stage(exp: Experiment, lm: LoadedModel, run: SeedRun) -> None:
    """The scaling curve's generators: each trained like the shared one, on the first K meta-training tasks,
    residual on union LoRA of those K tasks."""
    from ..generator.training import train_on_trajectories

    for count in exp.task_counts:
        fold = shared_fold(exp, count)
        config = replace(exp.generator, seed=run.seed, steps=exp.shared_generator_steps,
                         residual_base=_residual_base(exp, lm, run, fold))
        train_on_trajectories(run.trajectories, run.generator(fold.name), _holdout(exp, fold), config,
                              exp.partition.source, exp.progress, lm)


def residual_source(exp: Experiment, fold: Fold) -> Fold:
    """The fold whose union LoRA `fold`'s generator is residual on: the shared generator's (fold generators
    continue from it and keep its base) or the fold's own."""
    return shared_fold(exp) if exp.shared_generator_steps else fold


def generator_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> Path:
    from ..generator.training import train_on_trajectories

    config = replace(exp.generator, seed=run.seed)
    if exp.shared_generator_steps:  # trained once, on no target: every fold may start from it
        shared = shared_fold(exp)
        out = train_on_trajectories(run.trajectories, run.generator(SHARED_FOLD), _holdout(exp, shared),
                                    replace(config, steps=exp.shared_generator_steps,
                                            residual_base=_residual_base(exp, lm, run, shared)),
                                    exp.partition.source, exp.progress, lm)
        if exp.all_targets_out:
            return out
        config = replace(config, init_from=str(out), residual_base="")  # its residual base comes with it
    else:
        config = replace(config, residual_base=_residual_base(exp, lm, run, fold))
    # Training resumes, and returns at once when finished.
    return train_on_trajectories(run.trajectories, run.generator(fold.name), _holdout(exp, fold), config,
                                 exp.partition.source, exp.progress, lm)


def _holdout(exp: Experiment, fold: Fold) -> list[str]:
    """Every collected task the generator of `fold` must not train on (held-out ones with trajectories are
    only logged)."""
    training = {task_label(t) for t in fold.training}
    return sorted({task_label(t) for t in exp.all_tasks} - training)


def _residual_base(exp: Experiment, lm: LoadedModel, run: SeedRun, source: Fold) -> str:
    """The residual base as generator training takes it: an adapter directory, or empty for the mean training
    adapter. With `Experiment.residual_on_union` it is union LoRA of the generator's own training tasks: the
    union baseline's meta-training (its cache, so that baseline then scores this very adapter), written as a
    PEFT adapter."""
    if not exp.residual_on_union:
        return exp.generator.residual_base
    out = run.residual_base(source.name)
    if not (out / ADAPTER_WEIGHTS).is_file():
        say(exp, f"fold {source.name}: union LoRA of {len(source.training)} tasks as the generator's residual base")
        state, log = meta_trained(exp, lm, run, source, "union")
        write_adapter(state, exp.lora, exp.model.name, out, info={"baseline": "union", **log})
    return str(out)
