"""The report's data: one `ScoreRow` per (seed, target, method) read from the run's records, their aggregates
over seeds, and the tracks methods fall in by the labelled target examples they read."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ...data import TASKS
from ...evaluation.harness import read_results
from ..layout import BASE, DEGAML, DEGAML_K, GENERATED, MEAN, ORACLE, RETRIEVAL, seed_runs
from ..records import MethodCost


def metric_of(task: str, protocol: str = "loglikelihood") -> str:
    """The metric a task is reported in: its preferred one (acc_norm for ARC, HellaSwag, PIQA) under
    log-likelihood scoring; acc (the letter named) under the generative protocol."""
    if protocol != "loglikelihood":
        return "acc"
    return TASKS[task].preferred_metric if task in TASKS else "acc"


@dataclass(frozen=True)
class ScoreRow:
    """One method's test score on one target for one seed, with what producing it cost (scores.csv's row)."""

    seed: int
    task: str
    method: str
    metric: str
    score: float
    stderr: float
    acc: float
    acc_norm: float | None
    n: int
    seconds: float | None
    labelled_target_examples: int | None
    peak_rss_mb: float | None
    ceiling: bool
    action: str
    target_steps: int = 0
    unparseable: float | None = None
    """Generative protocol: the share of answers that named no valid letter (counted wrong)."""


def collect_rows(run_dir: Path, protocol: str = "loglikelihood") -> list[ScoreRow]:
    """One row per (seed, target, method) with a finished evaluation in `protocol`."""
    rows = []
    for seed_run in seed_runs(run_dir):
        for method_dir in seed_run.evaluated(protocol):
            task = method_dir.task
            result = read_results(method_dir.results_for(protocol))[0]
            metric = metric_of(task, protocol)
            cost = MethodCost.load(method_dir.cost) if method_dir.cost.is_file() else None
            rows.append(ScoreRow(
                seed=seed_run.seed, task=task, method=method_dir.method, metric=metric, score=result.metrics[metric],
                stderr=result.metrics[f"{metric}_stderr"], acc=result.metrics["acc"],
                acc_norm=result.metrics.get("acc_norm"), n=result.num_items,
                seconds=cost.seconds if cost else None,
                labelled_target_examples=cost.labelled_target_examples if cost else None,
                peak_rss_mb=cost.peak_rss_mb if cost else None, ceiling=bool(cost and cost.ceiling),
                action=cost.action if cost else "", target_steps=cost.target_steps if cost else 0,
                unparseable=(result.metrics["unparseable"] / result.num_items if "unparseable" in result.metrics
                             else None)))
    return rows


def missing_evaluations(run_dir: Path, rows: list[ScoreRow], seeds: list[int], targets: list[str],
                        protocol: str = "loglikelihood") -> list[str]:
    """What the report cannot show, one line each: a (seed, target, method) of the run's grid (its seeds and
    targets, every method reported anywhere) without a finished evaluation, saying whether the method's folder
    is there at all. A report of a run still going, or one whose files were lost, says so instead of leaving
    blank cells."""
    from ..layout import seed_run_in

    done = {(r.seed, r.task, r.method) for r in rows}
    methods = methods_in(rows)
    missing = []
    for seed in seeds:
        seed_run = seed_run_in(run_dir, seed)
        for target in targets:
            for method in methods:
                if (seed, target, method) in done:
                    continue
                where = seed_run.method(target, method)
                why = (f"no {where.results_for(protocol).relative_to(run_dir)}" if where.path.is_dir()
                       else f"no folder {where.path.relative_to(run_dir)}")
                missing.append(f"seed {seed}, {target}, {method}: {why}")
    return missing


@dataclass(frozen=True)
class Cell:
    """A (method, task) over seeds: mean score, spread (std over seeds, or the item stderr with one seed),
    mean seconds."""

    mean: float
    spread: float
    seeds: int
    seconds: float


def aggregate(rows: list[ScoreRow]) -> dict[tuple[str, str], Cell]:
    groups: dict[tuple[str, str], list[ScoreRow]] = defaultdict(list)
    for r in rows:
        groups[(r.method, r.task)].append(r)
    out = {}
    for key, group in groups.items():
        scores = [g.score for g in group]
        spread = statistics.stdev(scores) if len(scores) > 1 else group[0].stderr
        seconds = [g.seconds for g in group if g.seconds is not None]
        out[key] = Cell(statistics.fmean(scores), spread, len(scores),
                        statistics.fmean(seconds) if seconds else float("nan"))
    return out


def methods_in(rows: list[ScoreRow]) -> list[str]:
    found = {r.method for r in rows}
    order = [BASE, MEAN, RETRIEVAL, GENERATED, DEGAML, ORACLE, DEGAML_K]
    return [m for m in order if m in found] + sorted(found - set(order))


ANCHORS = {0: DEGAML}
"""The DeGAML method each track judges the others against: DeGAML in the zero-label track, DeGAML-k in any
other."""


def anchor_of(labels: int) -> str:
    return ANCHORS.get(labels, DEGAML_K)


def tracks(rows: list[ScoreRow]) -> dict[int, list[str]]:
    """{labelled target examples: the methods that read that many}, zero first; a method is placed by the
    most it read on any target. Ceilings (the oracle, the target-finetuned adapter) are in no track."""
    labels: dict[str, int] = {}
    for r in rows:
        if not r.ceiling:
            labels[r.method] = max(labels.get(r.method, 0), int(r.labelled_target_examples or 0))
    grouped: dict[int, list[str]] = {}
    for m in [m for m in methods_in(rows) if m in labels]:
        grouped.setdefault(labels[m], []).append(m)
    return dict(sorted(grouped.items()))


def track_name(labels: int) -> str:
    return "zero labels" if labels == 0 else f"k = {labels} labels"
