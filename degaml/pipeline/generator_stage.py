"""The generalization module's stages: trajectories of the training tasks (collect), then the generators
(one shared on the meta-training tasks, and one per fold under `holdout: one_task`), each residual on its
base adapter."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from ..data import task_label
from ..generator.trajectories import MANIFEST
from ..io import atomic_write_json, cache_root, exclusive_directory, key_fields, link_copy
from ..models import LoadedModel, write_adapter
from ..models.lora import ADAPTER_WEIGHTS
from .baseline_stage import meta_trained
from .experiment import SHARED_FOLD, Experiment, Fold, say, split_data
from .layout import SeedRun


def collect_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun) -> None:
    from ..generator.trajectories import collect_tasks

    # Leaving all targets out, nothing trains on the in-domain tasks' adapters. Targets' own trajectories are
    # collected only for the target-finetuned ceiling; every generator holds them out.
    tasks = list(exp.tasks.meta_training) + ([] if exp.all_targets_out else list(exp.tasks.train))
    if exp.ceiling == "trajectory":
        tasks += [t for t in exp.targets if t not in tasks]
    config = replace(exp.collect, seed=seed_run.seed)
    if exp.starts_from_union:
        config = replace(config, start=union_lora(exp, lm, seed_run, shared_fold(exp)))
    collect_tasks(lm, exp.model.name, split_data(exp, tasks, "train", None), seed_run.trajectories,
                  exp.lora, config, exp.progress, cache=cache_root() / "trajectories")


def shared_fold(exp: Experiment, count: int | None = None) -> Fold:
    """The generator trained on the meta-training tasks alone (`shared_generator_steps`; with `holdout: seen`,
    and on the `tasks.train` tasks), or on the first `count` of them (`task_counts`, the scaling curve)."""
    if count is None:
        return Fold(SHARED_FOLD, exp.shared_training, tuple(exp.targets))
    return Fold(f"{SHARED_FOLD}-{count}", tuple(exp.tasks.meta_training[:count]), tuple(exp.targets))


def scaling_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun) -> None:
    """The scaling curve's generators: each trained like the shared one, on the first K meta-training tasks,
    residual on union LoRA of those K tasks."""
    for count in exp.task_counts:
        fold = shared_fold(exp, count)
        config = replace(exp.generator, seed=seed_run.seed, steps=exp.shared_generator_steps,
                         residual_base=_residual_base(exp, lm, seed_run, fold))
        _train(exp, lm, seed_run, fold, config)


def residual_source(exp: Experiment, fold: Fold) -> Fold:
    """The fold whose union LoRA `fold`'s generator is residual on: the shared generator's (fold generators
    continue from it and keep its base) or the fold's own."""
    return shared_fold(exp) if exp.shared_generator_steps else fold


def generator_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold) -> Path:
    config = replace(exp.generator, seed=seed_run.seed)
    if exp.shared_generator_steps:  # trained once, on no target: every fold may start from it
        shared = shared_fold(exp)
        out = _train(exp, lm, seed_run, shared, replace(config, steps=exp.shared_generator_steps,
                                                   residual_base=_residual_base(exp, lm, seed_run, shared)))
        if exp.one_generator:
            return out
        config = replace(config, init_from=str(out), residual_base="")  # its residual base comes with it
    else:
        config = replace(config, residual_base=_residual_base(exp, lm, seed_run, fold))
    return _train(exp, lm, seed_run, fold, config)


def _train(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold, config) -> Path:
    """`fold`'s generator at `run.generator(fold.name)`: trained (or resumed) once per machine in
    `<cache_root>/generators/`, keyed by everything that determines it (the training settings, the residual
    base's and starting generator's weights, every trajectory's manifest, the held-out tasks, the model
    weights and dtype), and hard-linked into the run. A finished one returns at once."""
    from ..generator.training import saved_step, train_on_trajectories

    out = seed_run.generator(fold.name)
    if saved_step(out) >= config.steps:
        return out
    holdout = _holdout(exp, fold)
    cached = cache_root() / "generators" / f"{fold.name}-{_generator_key(lm, seed_run, config, holdout)}"
    with exclusive_directory(cached):
        if not (cached / GENERATOR_COMPLETE).is_file():  # training resumes, and returns at once when finished
            train_on_trajectories(seed_run.trajectories, cached, holdout, config, exp.partition.source, exp.progress, lm)
            atomic_write_json(cached / GENERATOR_COMPLETE, {"fold": fold.name, "steps": config.steps})
    with exclusive_directory(out):
        link_copy(cached, out, GENERATOR_COMPLETE)
    return out


GENERATOR_COMPLETE = "complete.json"


def _generator_key(lm: LoadedModel, seed_run: SeedRun, config, holdout: list[str]) -> str:
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""

    inputs = {"config": key_fields(config), "holdout": holdout, "dtype": lm.precision.dtype, "weights": lm.source,
              "residual_base": digest(Path(config.residual_base) / ADAPTER_WEIGHTS) if config.residual_base else "",
              "init_from": digest(Path(config.init_from) / "decoder.safetensors") if config.init_from else "",
              "trajectories": {d.name: digest(d / MANIFEST) for d in sorted(seed_run.trajectories.iterdir()) if d.is_dir()}}
    for path in ("residual_base", "init_from"):  # a run's own path: the weights' digest stands for it
        inputs["config"][path] = ""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _holdout(exp: Experiment, fold: Fold) -> list[str]:
    """Every collected task the generator of `fold` must not train on (held-out ones with trajectories are
    only logged)."""
    training = {task_label(t) for t in fold.training}
    return sorted({task_label(t) for t in exp.all_tasks} - training)


def _residual_base(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, source: Fold) -> str:
    """The residual base as generator training takes it: an adapter directory, or empty for the mean training
    adapter. With `Experiment.residual_on_union` it is union LoRA of the generator's own training tasks."""
    return union_lora(exp, lm, seed_run, source) if exp.residual_on_union else exp.generator.residual_base


def union_lora(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, source: Fold) -> str:
    """Union LoRA of `source`'s training tasks as a PEFT adapter directory: the union baseline's meta-training
    (its cache, so that baseline then scores this very adapter), written once per run and fold."""
    out = seed_run.residual_base(source.name)
    if not (out / ADAPTER_WEIGHTS).is_file():
        say(exp, f"fold {source.name}: union LoRA of {len(source.training)} tasks as the generator's residual base")
        state, record = meta_trained(exp, lm, seed_run, source, "union")
        write_adapter(state, exp.lora, exp.model.name, out, info={"baseline": "union", **record.as_log()})
    return str(out)
