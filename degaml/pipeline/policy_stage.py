"""The adaptation policy of each fold (nested leave-one-out rewards) and the oracle beside it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import EvalConfig
from ..data import task_label
from ..models import LoadedModel, copy_output
from .experiment import ALL_FOLD, Experiment, Fold, say, split_data
from .layout import ORACLE, SeedRun, action_method
from .records import MethodCost
from .settings import PolicySettings


def policy_actions(settings: PolicySettings) -> list:
    from ..adaptation.actions import default_actions

    actions = default_actions()
    if settings.actions is None:
        return actions
    known = {a.label: a for a in actions}
    unknown = [label for label in settings.actions if label not in known]
    if unknown:
        raise ValueError(f"policy.actions: unknown action(s) {unknown}; valid: {list(known)}")
    return [known[label] for label in settings.actions]


def policy_tasks(exp: Experiment, fold: Fold, fold_list: list[Fold]) -> list[tuple[str, str]]:
    """The reward tasks of a fold's policy, each with the fold whose generator adapts it: `tasks.reward` by the
    fold's own generator, when the run names them; else the other in-domain folds' targets, each by its own
    fold's generator, which never trained on it (nested leave-one-out: the policy learns from out-of-sample
    adapters, as its target's is). With neither, the fold's training tasks by its own generator (in-sample;
    policy.json says so)."""
    if exp.tasks.reward:
        return [(task, fold.name) for task in exp.tasks.reward]
    others = [(f.targets[0], f.name) for f in fold_list
              if f.name not in (ALL_FOLD, fold.name) and f.targets[0] not in fold.targets]
    return others or [(t, fold.name) for t in fold.training]


def policy_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold, fold_list: list[Fold]) -> Path:
    """The fold's policy, and one per `policy.compare` algorithm, fitted on the same measured rewards."""
    from ..adaptation.policy import POLICY_FILE, PolicyConfig
    from ..adaptation.policy_training import fit_policy_on_tasks

    p = exp.policy
    chosen = policy_tasks(exp, fold, fold_list)[:p.max_tasks]
    # A target's rewards are shared with its fold's oracle; `tasks.reward` rewards are filed under the generator
    # that adapted them (one shared generator: measured once for every fold).
    rewards = {task_label(task): seed_run.rewards(exp.generator_dir(seed_run, name).parent.name if exp.tasks.reward else name)
               for task, name in chosen}
    for algorithm, out in [(p.algorithm, seed_run.policy(fold.name)),
                           *((m, seed_run.policy(fold.name, m)) for m in p.compare)]:
        if (out / POLICY_FILE).is_file():
            continue
        config = PolicyConfig(algorithm=algorithm, epochs=p.epochs, lr=p.lr, cost_penalty=p.cost_penalty, seed=seed_run.seed)
        fit_policy_on_tasks([(task, exp.generator_dir(seed_run, name)) for task, name in chosen], lm, policy_actions(p),
                            config, out, split_data(exp, [], "validation", p.validation_limit), p.adaptation_prompts,
                            exp.progress, exclude=fold.targets, rewards_dir=lambda task, gen: rewards[task],
                            evaluation=EvalConfig(max_length=p.max_length))
    return seed_run.policy(fold.name)


def oracle(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold, target: str, gen: Any, ctx: Any) -> None:
    """Every policy action measured on the target's validation items; the best one (the first on ties: `none`
    leads the list) is applied, and recorded with the validation labels it read. With `policy.single_actions` the
    actions' outputs on this target exist already: they are scored, not made again."""
    from ..adaptation.actions import Action
    from ..adaptation.policy_training import preferred_metric
    from ..adaptation.rewards import measure_actions
    from ..adaptation.task_setup import adapt_task
    from ..data.prompts import load_partitioned

    actions = policy_actions(exp.policy)
    made = {a.label: seed_run.method(target, action_method(a.label)) for a in actions} if exp.policy.single_actions else {}
    adapted = {label: d.output for label, d in made.items() if d.cost.is_file()}
    validation = split_data(exp, [target], "validation", exp.policy.validation_limit)
    started = time.perf_counter()
    table = measure_actions(ctx, task_label(target), actions, validation, EvalConfig(max_length=exp.policy.max_length),
                            seed_run.rewards(fold.name),
                            load_partitioned(validation), preferred_metric(target), progress=False, adapted=adapted)
    best = max(sorted(actions, key=lambda a: a != Action("none")), key=lambda a: table[a.label].score)
    directory = seed_run.method(target, ORACLE)
    if best.label in adapted:
        copy_output(adapted[best.label], directory.output)
    else:
        adapt_task(gen, ctx, directory.output, action=best)
    MethodCost(seconds=time.perf_counter() - started, ceiling=True, labelled_target_examples=table[best.label].n,
               action=best.label, validation_scores={a: r.score for a, r in table.items()}).save(directory.cost)
    say(exp, f"{target}: {ORACLE} = {best.label} (validation {100 * table[best.label].score:.1f})")
