"""Train the policy on meta-training tasks: measure every action's validation reward on each task, build
each task's label-free state, fit the policy, save it with its reward table."""

from __future__ import annotations

from collections.abc import Sequence
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


def fit_policy_on_tasks(gen: Generator, lm: LoadedModel, tasks: Sequence[str], actions: Sequence[Action],
                        config: PolicyConfig, out: Path, data: DataConfig, adaptation_prompts: int = 32,
                        progress: bool = True
                        ) -> tuple[LinearPolicy, dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """(policy, reward table {task: {action: row}}, the policy's choice per training task). `data` gives
    the partition settings and the validation limit (its tasks and split are replaced)."""
    held = set(gen.card.heldout_tasks)
    if held & {task_label(t) for t in tasks}:
        raise ValueError(f"policy tasks include the generator's held-out task(s) {sorted(held)}: "
                         "the policy must be trained on meta-training tasks only")
    table, states = {}, []
    for name in tasks:
        label = task_label(name)
        validation = replace(data, tasks=[name], split="validation")
        items = task_items(name, "train", data.partition_seed, data.validation_fraction, data.test_fraction,
                           data.source)[:adaptation_prompts]
        ctx = adaptation_context(gen, lm, label, items, config.seed)
        metric = preferred_metric(name)
        if progress:
            print(f"{label}: measuring {len(actions)} actions on validation ({metric})")
        table[label] = measure_actions(ctx, label, actions, validation, EvalConfig(), out,
                                       load_partitioned(validation), metric, progress=progress)
        states.append(task_features(gen, ctx).vector())
    labels = list(table)

    def reward(i: int, action: Action) -> float:  # validation gain over the generated adapter
        row = table[labels[i]]
        return row[action.label]["score"] - row[Action("none").label]["score"]

    policy, history = train_policy(torch.stack(states), reward, actions, config)
    choices = {t: policy.choose(s).label for t, s in zip(labels, states)}
    save_policy(policy, config, out, extra={"generator": str(gen.directory), "tasks": labels,
                                            "choices_on_training_tasks": choices, "reward_history": history,
                                            "limit": data.limit})
    atomic_write_text(out / "rewards.md", f"validation score per action (points), limit {data.limit}\n\n"
                                          f"{format_reward_table(table, actions)}\n")
    return policy, table, choices
