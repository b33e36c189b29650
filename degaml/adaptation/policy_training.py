"""Train the policy on meta-training tasks: measure every action's validation reward on each task, build
each task's label-free state, fit the policy, save it with its reward table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import DataConfig, EvalConfig
from ..data import TASKS, task_label
from ..data.prompts import load_partitioned, task_items
from ..generator.generation import Generator
from ..io import atomic_write_text
from ..models import LoadedModel
from .actions import Action
from .policy import LinearPolicy, PolicyConfig, save_policy, train_policy
from .rewards import format_reward_table, measure_actions
from .task_setup import adaptation_context, task_features


def preferred_metric(task: str) -> str:
    label = task_label(task)
    return TASKS[label].preferred_metric if label in TASKS else "acc"


def fit_policy_on_tasks(tasks: Sequence[tuple[str, Path]], lm: LoadedModel, actions: Sequence[Action],
                        config: PolicyConfig, out: Path, data: DataConfig, adaptation_prompts: int = 32,
                        progress: bool = True, exclude: Sequence[str] = (),
                        rewards_dir: Callable[[str, Generator], Path] | None = None,
                        evaluation: EvalConfig | None = None
                        ) -> tuple[LinearPolicy, dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """(policy, reward table {task: {action: row}}, the policy's choice per training task). `tasks`: each
    reward task with the directory of the generator whose adapter it gets; one generator is in memory at a
    time, on the model's device. A generator that did not train on its task (held
    out, or never among its tasks) gives the out-of-sample adapter a target will get; one that did gives an
    in-sample adapter, recorded in policy.json. `exclude`: the targets the policy will serve, refused here.
    `data` gives the partition settings and the validation limit (its tasks and split are replaced).
    `rewards_dir(task, generator)`: where that pair's measured rewards are kept (default `out`), so policies
    that learn from the same pair share one measurement. `evaluation`: how rewards are scored (its
    `max_length` bounds long contexts; default: the model's window)."""
    refused = {task_label(t) for t in exclude} & {task_label(t) for t, _ in tasks}
    if refused:
        raise ValueError(f"policy tasks include its target(s) {sorted(refused)}: a policy never sees the labels "
                         "of the tasks it serves")
    table, states, in_sample = {}, [], []
    library = any(a.needs_library for a in actions)  # loading every training task's adapter is slow at 150 tasks
    loaded: tuple[Path, Generator] | None = None
    for name, directory in tasks:
        if loaded is None or loaded[0] != Path(directory):
            loaded = None  # the previous decoder is released before the next loads
            loaded = (Path(directory), Generator(directory, str(lm.device)))
        gen = loaded[1]
        label = task_label(name)
        if label in {task_label(t) for t in gen.record.train_tasks}:
            in_sample.append(label)
        validation = replace(data, tasks=[name], split="validation")
        items = task_items(name, "train", data.partition)[:adaptation_prompts]
        ctx = adaptation_context(gen, lm, label, items, config.seed, with_library=library)
        metric = preferred_metric(name)
        if progress:
            sample = "in-sample" if label in in_sample else "out-of-sample"
            print(f"{label}: measuring {len(actions)} actions on validation ({metric}, {sample} adapter)")
        work = rewards_dir(label, gen) if rewards_dir is not None else out
        table[label] = measure_actions(ctx, label, actions, validation, evaluation or EvalConfig(), work,
                                       load_partitioned(validation), metric, progress=progress)
        states.append(task_features(gen, ctx).vector())
    labels = list(table)

    def reward(i: int, action: Action) -> float:  # validation gain over the generated adapter
        row = table[labels[i]]
        return row[action.label].score - row[Action("none").label].score

    policy, history = train_policy(torch.stack(states), reward, actions, config)
    choices = {t: policy.choose(s).label for t, s in zip(labels, states)}
    save_policy(policy, config, out, extra={"generators": {task_label(t): str(d) for t, d in tasks},
                                            "tasks": labels, "in_sample_tasks": in_sample,
                                            "choices_on_training_tasks": choices, "reward_history": history,
                                            "limit": data.limit})
    atomic_write_text(out / "rewards.md", f"validation score per action (points), limit {data.limit}\n\n"
                                          f"{format_reward_table(table, actions)}\n")
    return policy, table, choices
