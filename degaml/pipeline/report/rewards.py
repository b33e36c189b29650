"""The report's section on what the policy learnt from: each action's reward (its score on a reward task's
validation items) averaged over the run's reward tasks, the best single action there, and what measuring a
reward cost, from each fold's `rewards/rewards.jsonl` (published with the run). The best single action on the
reward tasks is the fair "best single family" to set against the policy: it is chosen without reading a
target's labels, as the policy is."""

from __future__ import annotations

import statistics
from pathlib import Path

from ...data import task_label
from ..experiment import Experiment
from ..layout import seed_runs


def reward_rows(run_dir: Path, settings: Experiment) -> dict[tuple[str, str], list]:
    """{(seed directory, fold): its reward rows of tasks that are not targets} (the targets' rows are the oracle's
    validation measurements, which read their labels)."""
    from ...adaptation.rewards import REWARDS_FILE, read_rows

    targets = {task_label(t) for t in settings.targets}
    found = {}
    for seed_run in seed_runs(run_dir):
        for path in sorted(seed_run.root.glob(f"folds/*/rewards/{REWARDS_FILE}")):
            rows = [r for r in read_rows(path) if r.task not in targets]
            if rows:
                found[(seed_run.root.name, path.parent.parent.name)] = rows
    return found


def reward_table(rows: list) -> dict[str, dict[str, object]]:
    """{action label: {task: its row}} on the tasks where every action was measured, actions in the order measured."""
    labels = list(dict.fromkeys(r.action_label for r in rows))
    tasks = set.intersection(*({r.task for r in rows if r.action_label == a} for a in labels))
    return {a: {r.task: r for r in rows if r.action_label == a and r.task in tasks} for a in labels}


def best_action(table: dict[str, dict[str, object]]) -> str:
    """The action of `reward_table` with the highest mean reward; `none` wins ties, then the order measured."""
    return max(sorted(table, key=lambda a: a != "none"),
               key=lambda a: statistics.fmean(r.score for r in table[a].values()))


def reward_section(run_dir: Path, settings: Experiment) -> list[str]:
    """The section's Markdown ([] for a run without reward rows of its own)."""
    sections = []
    for (seed, fold), rows in reward_rows(run_dir, settings).items():
        table = reward_table(rows)
        tasks = list(next(iter(table.values())))
        best_on = dict.fromkeys(table, 0.0)
        for task in tasks:
            top = max(table[a][task].score for a in table)
            winners = [a for a in table if table[a][task].score == top]
            for a in winners:
                best_on[a] += 1 / len(winners)
        lines = ["| action | mean reward (validation score) | tasks it is best on (ties shared) | adapt s per task "
                 "| score s per task |", "|---|---|---|---|---|"]
        for a, by_task in table.items():
            group = by_task.values()
            lines.append(f"| {a} | {100 * statistics.fmean(r.score for r in group):.1f} | {best_on[a]:.1f} | "
                         f"{statistics.fmean(r.adapt_seconds for r in group):.1f} | "
                         f"{statistics.fmean(r.eval_seconds for r in group):.1f} |")
        seconds = sum(r.adapt_seconds + r.eval_seconds for by_task in table.values() for r in by_task.values())
        sections += [f"## the policy's reward tasks ({seed}, fold {fold})\n",
                     f"{len(tasks)} reward tasks, each action applied to the generated adapter and scored on the "
                     f"task's validation items ({statistics.fmean(r.n for r in rows):.0f} a task on average). The best "
                     f"single action here, chosen without a target's labels: **{best_action(table)}**. Measuring them "
                     f"took {seconds:.0f} s ({seconds / len(tasks):.0f} s a task).\n", "\n".join(lines) + "\n"]
    return sections
