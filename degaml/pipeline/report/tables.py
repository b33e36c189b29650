"""The report's tables: methods x tasks of one track, the cost of each method, the wall time of each stage."""

from __future__ import annotations

import statistics

from ..layout import BASE, DEGAML, GENERATED
from ..records import StageTimings
from .rows import Cell, ScoreRow, metric_of

ABLATION = [(BASE, "base model"), (GENERATED, "+ generalization (generated adapter)"),
            (DEGAML, "+ adaptation (policy) = DeGAML")]


def method_table(agg: dict[tuple[str, str], Cell], methods: list[str], tasks: list[str], track: str,
                 protocol: str = "loglikelihood") -> tuple[str, list[list[str]], dict[str, float]]:
    """(markdown, csv rows, average per method) over `tasks` (methods missing a task get no average); each task
    headed by the metric its cells are in under `protocol`."""
    averages: dict[str, float] = {}
    md = ["| method | " + " | ".join(f"{t} ({metric_of(t, protocol)})" for t in tasks) + " | average |",
          "|---|" + "---|" * (len(tasks) + 1)]
    rows = []
    for m in methods:
        cells = [agg.get((m, t)) for t in tasks]
        if all(c is not None for c in cells):
            averages[m] = statistics.fmean(c.mean for c in cells)  # type: ignore[union-attr]
        shown = [f"{100 * c.mean:.1f} ± {100 * c.spread:.1f}" if c else "-" for c in cells]
        average = f"{100 * averages[m]:.1f}" if m in averages else "-"
        md.append(f"| {m} | " + " | ".join(shown) + f" | {average} |")
        rows.append([track, m, *[f"{c.mean:.4f}" if c else "" for c in cells],
                     f"{averages[m]:.4f}" if m in averages else ""])
    return "\n".join(md), rows, averages


def cost_table(rows: list[ScoreRow], methods: list[str]) -> str:
    lines = ["| method | seconds per target | peak RSS MB | labelled target examples | target optimizer steps |",
             "|---|---|---|---|---|"]
    for m in methods:
        group = [r for r in rows if r.method == m and r.seconds is not None]
        if group:
            peaks = [r.peak_rss_mb for r in group if r.peak_rss_mb]
            peak = f"{max(peaks):.0f}" if peaks else "-"
            lines.append(f"| {m} | {statistics.fmean(r.seconds for r in group):.2f} | {peak} | "  # type: ignore[misc]
                         f"{group[0].labelled_target_examples} | {max(r.target_steps for r in group)} |")
    return "\n".join(lines)


def stage_table(timings: dict[str, StageTimings]) -> str:
    """Seconds and peak RSS of each stage, one column pair per seed, and the whole run."""
    seeds = list(timings)
    lines = ["| stage | " + " | ".join(f"{seed} s | {seed} peak RSS MB" for seed in seeds) + " |",
             "|---|" + "---|---|" * len(seeds)]
    stages = list(dict.fromkeys(stage for t in timings.values() for stage in t.seconds))
    for stage in stages + ["whole run"]:
        cells = []
        for t in timings.values():
            seconds = sum(t.seconds.values()) if stage == "whole run" else t.seconds.get(stage)
            peak = max(t.peak_rss_mb.values()) if stage == "whole run" else t.peak_rss_mb.get(stage)
            cells.append(f"{seconds:.0f} | {peak:.0f}" if seconds is not None else "- | -")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
