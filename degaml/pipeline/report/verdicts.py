"""Paired comparisons on the same items: per-item correctness over seeds, each difference with its paired
bootstrap 95% interval and the verdict it supports, and the majority-class rate of two-choice tasks."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ...evaluation.harness import read_results
from ..layout import BASE, DEGAML, seed_runs
from .rows import metric_of

Correctness = dict[str, dict[str, dict[str, float]]]
"""{method: {task: {item id: correctness under the task's preferred metric, averaged over seeds}}}."""


def item_correctness(run_dir: Path, protocol: str = "loglikelihood", seed: int | None = None) -> Correctness:
    """Over every seed of the run, or over `seed` alone."""
    sums: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for run in seed_runs(run_dir):
        if seed is not None and run.seed != seed:
            continue
        for method_dir in run.evaluated(protocol):
            task, method = method_dir.task, method_dir.method
            result = read_results(method_dir.results_for(protocol))[0]
            for item, correct in result.correctness(metric_of(task, protocol)).items():
                sums[method][task].setdefault(item, []).append(correct)
    return {m: {t: {i: statistics.fmean(v) for i, v in items.items()} for t, items in tasks.items()}
            for m, tasks in sums.items()}


def paired_difference(correct: Correctness, a: str, b: str, tasks: list[str]):
    """`a` minus `b` on the items both scored, task-averaged, with its paired bootstrap interval; None when
    either lacks a task."""
    from ...evaluation.statistics import paired_bootstrap

    if not all(t in correct.get(m, {}) for m in (a, b) for t in tasks):
        return None
    ids = {t: sorted(correct[a][t].keys() & correct[b][t].keys()) for t in tasks}
    return paired_bootstrap({t: [correct[a][t][i] for i in ids[t]] for t in tasks},
                            {t: [correct[b][t][i] for i in ids[t]] for t in tasks})


def recovered_shares(correct: Correctness, method: str, floor: str, ceiling: str, tasks: list[str]) -> list[str]:
    """Table rows of the share of `ceiling`'s gain over `floor` that `method` recovers, per task and over the
    tasks (each with its paired bootstrap interval, on the items all three scored); none when one lacks a task."""
    from ...evaluation.statistics import recovered_share

    if not all(t in correct.get(m, {}) for m in (method, floor, ceiling) for t in tasks):
        return []
    rows = []
    for label, group in [*((t, [t]) for t in tasks), (f"average of {len(tasks)}", tasks)]:
        ids = {t: sorted(correct[method][t].keys() & correct[floor][t].keys() & correct[ceiling][t].keys())
               for t in group}
        share = recovered_share(*({t: [correct[m][t][i] for i in ids[t]] for t in group}
                                  for m in (method, floor, ceiling)))
        rows.append(f"| {label} | {share.gain} | {share.headroom} | {share} |")
    return rows


UNIFORM_ACTION = "uniform-action"
"""The report's expectation of `random-action` (not a run's method): per item, the mean correctness of the single
actions, which is what an action drawn uniformly scores without one draw's luck."""


def expected_correctness(correct: Correctness, methods: list[str]) -> dict[str, dict[str, float]]:
    """{task: {item: the mean correctness of `methods`}} on the tasks and items all of them scored: what one of
    them drawn uniformly per target scores, in expectation."""
    tasks = set.intersection(*(set(correct[m]) for m in methods))
    expected = {}
    for task in sorted(tasks):
        items = set.intersection(*(set(correct[m][task]) for m in methods))
        expected[task] = {i: statistics.fmean(correct[m][task][i] for m in methods) for i in sorted(items)}
    return expected


def verdicts(correct: Correctness, tasks: list[str], seeds: int, anchor: str = DEGAML,
             methods: list[str] | None = None) -> list[str]:
    """`anchor` against every other method (of `methods`, default all) on the same items: the task-averaged
    difference with its paired bootstrap 95% interval, and the verdict it supports (an interval spanning 0
    is a tie)."""
    name = "DeGAML" if anchor == DEGAML else anchor
    lines = []
    for m in correct:
        if m == anchor or (methods is not None and m not in methods):
            continue
        d = paired_difference(correct, anchor, m, tasks)
        if d is None:
            continue
        lines.append(f"- {name} {d.verdict} {m}: {d} points (paired bootstrap 95% interval; {d.items} items "
                     f"over {d.tasks} task(s), correctness averaged over {seeds} seed(s))")
    return lines


def majority_rates(run_dir: Path, tasks: list[str]) -> dict[str, float]:
    """Share of the most frequent gold answer on the evaluated items of each two-choice task (what a constant
    answer scores)."""
    rates = {}
    for run in seed_runs(run_dir)[:1]:
        for method_dir in run.evaluated():
            if method_dir.method != BASE or method_dir.task not in tasks or method_dir.task in rates:
                continue
            rate = read_results(method_dir.results)[0].majority_rate()
            if rate is not None:
                rates[method_dir.task] = rate
    return rates
