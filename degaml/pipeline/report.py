"""The report of a `degaml run` directory, rebuilt from its artifacts alone (`degaml report <dir>`):
the paper's tables (in-domain and out-of-domain, methods x tasks, average) in two tracks by the labelled
target examples a method read (zero labels: DeGAML against the zero-label methods; k labels: DeGAML-k
against the k-label methods), each anchor's difference from every method of its track with a paired
bootstrap interval on the same items, the majority-class rate of two-choice tasks, the stage ablation
(base / +generalization / +adaptation), mean and spread over seeds, as CSV and Markdown, and PNG plots.
Nothing is recomputed."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from ..data import TASKS, task_label
from ..evaluation.metrics import prediction_correctness
from ..io import atomic_write_text
from .layout import BASE, DEGAML, DEGAML_K, GENERATED, MEAN, ORACLE, RETRIEVAL, seed_runs

ABLATION = [(BASE, "base model"), (GENERATED, "+ generalization (generated adapter)"),
            (DEGAML, "+ adaptation (policy) = DeGAML")]


def metric_of(task: str) -> str:
    return TASKS[task].preferred_metric if task in TASKS else "acc"


def collect_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per (seed, target, method) with a finished evaluation."""
    rows = []
    for run in seed_runs(run_dir):
        for method_dir in run.evaluated():
            task, method = method_dir.task, method_dir.method
            result = json.loads(method_dir.results.read_text())["results"][0]
            metric = metric_of(task)
            cost = json.loads(method_dir.cost.read_text()) if method_dir.cost.is_file() else {}
            rows.append({"seed": run.seed, "task": task, "method": method, "metric": metric,
                         "score": result["metrics"][metric], "stderr": result["metrics"][f"{metric}_stderr"],
                         "acc": result["metrics"]["acc"], "acc_norm": result["metrics"].get("acc_norm"),
                         "n": result["num_items"], "seconds": cost.get("seconds"),
                         "labelled_target_examples": cost.get("labelled_target_examples"),
                         "peak_rss_mb": cost.get("peak_rss_mb"), "reference": bool(cost.get("reference")),
                         "action": cost.get("action", "")})
    return rows


def _aggregate(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """(method, task) -> mean, spread (std over seeds, or the item stderr with one seed), seconds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["task"])].append(r)
    out = {}
    for key, group in groups.items():
        scores = [g["score"] for g in group]
        spread = statistics.stdev(scores) if len(scores) > 1 else group[0]["stderr"]
        seconds = [g["seconds"] for g in group if g["seconds"] is not None]
        out[key] = {"mean": statistics.fmean(scores), "spread": spread, "seeds": len(scores),
                    "seconds": statistics.fmean(seconds) if seconds else float("nan")}
    return out


def _methods(rows: list[dict[str, Any]]) -> list[str]:
    found = {r["method"] for r in rows}
    order = [BASE, MEAN, RETRIEVAL, GENERATED, DEGAML, ORACLE, DEGAML_K]
    return [m for m in order if m in found] + sorted(found - set(order))


ANCHORS = {0: DEGAML}
"""The DeGAML method each track judges the others against: DeGAML in the zero-label track, DeGAML-k in any
other."""


def tracks(rows: list[dict[str, Any]]) -> dict[int, list[str]]:
    """{labelled target examples: the methods that read that many}, zero first; a method is placed by the
    most it read on any target. References (the oracle) are in no track."""
    labels: dict[str, int] = {}
    for r in rows:
        if not r["reference"]:
            labels[r["method"]] = max(labels.get(r["method"], 0), int(r["labelled_target_examples"] or 0))
    grouped: dict[int, list[str]] = {}
    for m in [m for m in _methods(rows) if m in labels]:
        grouped.setdefault(labels[m], []).append(m)
    return dict(sorted(grouped.items()))


def track_name(labels: int) -> str:
    return "zero labels" if labels == 0 else f"k = {labels} labels"


def method_table(agg: dict, methods: list[str], tasks: list[str], track: str
                 ) -> tuple[str, list[list[str]], dict[str, float]]:
    """(markdown, csv rows, average per method) over `tasks` (methods missing a task get no average)."""
    averages: dict[str, float] = {}
    md = ["| method | " + " | ".join(f"{t} ({metric_of(t)})" for t in tasks) + " | average |",
          "|---|" + "---|" * (len(tasks) + 1)]
    rows = []
    for m in methods:
        cells = [agg.get((m, t)) for t in tasks]
        if all(c is not None for c in cells):
            averages[m] = statistics.fmean(c["mean"] for c in cells)  # type: ignore[index]
        shown = [f"{100 * c['mean']:.1f} ± {100 * c['spread']:.1f}" if c else "-" for c in cells]
        average = f"{100 * averages[m]:.1f}" if m in averages else "-"
        md.append(f"| {m} | " + " | ".join(shown) + f" | {average} |")
        rows.append([track, m, *[f"{c['mean']:.4f}" if c else "" for c in cells],
                     f"{averages[m]:.4f}" if m in averages else ""])
    return "\n".join(md), rows, averages


def item_correctness(run_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {task: {item id: correctness under the task's preferred metric, averaged over seeds}}}."""
    sums: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for run in seed_runs(run_dir):
        for method_dir in run.evaluated():
            task, method = method_dir.task, method_dir.method
            predictions = json.loads(method_dir.results.read_text())["results"][0]["predictions"]
            for p, correct in zip(predictions, prediction_correctness(predictions, metric_of(task))):
                sums[method][task].setdefault(p["id"], []).append(correct)
    return {m: {t: {i: statistics.fmean(v) for i, v in items.items()} for t, items in tasks.items()}
            for m, tasks in sums.items()}


def paired_difference(correct: dict[str, dict[str, dict[str, float]]], a: str, b: str, tasks: list[str]):
    """`a` minus `b` on the items both scored, task-averaged, with its paired bootstrap interval; None when
    either lacks a task."""
    from ..evaluation.statistics import paired_bootstrap

    if not all(t in correct.get(m, {}) for m in (a, b) for t in tasks):
        return None
    ids = {t: sorted(correct[a][t].keys() & correct[b][t].keys()) for t in tasks}
    return paired_bootstrap({t: [correct[a][t][i] for i in ids[t]] for t in tasks},
                            {t: [correct[b][t][i] for i in ids[t]] for t in tasks})


def verdicts(correct: dict[str, dict[str, dict[str, float]]], tasks: list[str], seeds: int,
             anchor: str = DEGAML, methods: list[str] | None = None) -> list[str]:
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
    """Share of the most frequent gold answer on the evaluated items of each two-choice task (the floor a
    constant answer reaches)."""
    rates = {}
    for run in seed_runs(run_dir)[:1]:
        for method_dir in run.evaluated():
            if method_dir.method != BASE or method_dir.task not in tasks or method_dir.task in rates:
                continue
            predictions = json.loads(method_dir.results.read_text())["results"][0]["predictions"]
            golds = [p["gold"] for p in predictions]
            if predictions and len(predictions[0]["logprobs"]) == 2:
                rates[method_dir.task] = max(golds.count(g) for g in set(golds)) / len(golds)
    return rates


def _plots(agg: dict, methods: list[str], domains: dict[str, list[str]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = [t for ts in domains.values() for t in ts]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) * len(methods) / 3), 4))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs = [j + i * width for j, t in enumerate(tasks) if (m, t) in agg]
        ys = [100 * agg[(m, t)]["mean"] for t in tasks if (m, t) in agg]
        es = [100 * agg[(m, t)]["spread"] for t in tasks if (m, t) in agg]
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=30, ha="right")
    ax.set_ylabel("test score (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "per_task.png", dpi=120)
    plt.close(fig)
    written.append("per_task.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, ts in enumerate(domains.values()):
        stages = [s for s, _ in ABLATION if all((s, t) in agg for t in ts)]
        values = [100 * statistics.fmean(agg[(s, t)]["mean"] for t in ts) for s in stages]
        ax.bar([k + i * 0.25 for i in range(len(stages))], values, 0.25,
               color=["#999999", "#6baed6", "#08519c"][:len(stages)])
        for i, v in enumerate(values):
            ax.text(k + i * 0.25, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([k + 0.25 for k in range(len(domains))], list(domains))
    ax.set_ylabel("average test score (%)")
    ax.set_title("stage ablation: base / +generalization / +adaptation", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=120)
    plt.close(fig)
    written.append("ablation.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = "osD^vP*X"  # coinciding methods (DeGAML choosing "none") stay distinguishable
    for i, m in enumerate(methods):
        points = [(agg[(m, t)]["seconds"], agg[(m, t)]["mean"]) for t in tasks if (m, t) in agg]
        if not points:
            continue
        seconds = statistics.fmean(p[0] for p in points)
        ax.scatter([max(seconds, 0.01)], [100 * statistics.fmean(p[1] for p in points)], label=m,
                   marker=markers[i % len(markers)], s=60 - 4 * i, alpha=0.8)
    ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per target (generation + adaptation, or training)")
    ax.set_ylabel("average test score (%)")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_time.png", dpi=120)
    plt.close(fig)
    written.append("accuracy_vs_time.png")
    return written


def _stage_table(timings: dict[str, dict[str, dict[str, float]]]) -> str:
    seeds = list(timings)
    lines = ["| stage | " + " | ".join(f"{seed} s | {seed} peak RSS MB" for seed in seeds) + " |",
             "|---|" + "---|---|" * len(seeds)]
    stages = list(dict.fromkeys(stage for t in timings.values() for stage in t["seconds"]))
    for stage in stages + ["whole run"]:
        cells = []
        for t in timings.values():
            seconds = sum(t["seconds"].values()) if stage == "whole run" else t["seconds"].get(stage)
            peak = max(t["peak_rss_mb"].values()) if stage == "whole run" else t["peak_rss_mb"].get(stage)
            cells.append(f"{seconds:.0f} | {peak:.0f}" if seconds is not None else "- | -")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    settings_file = run_dir / "experiment.yaml"
    if not settings_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a `degaml run` directory (no experiment.yaml)")
    settings = yaml.safe_load(settings_file.read_text())
    rows = collect_rows(run_dir)
    if not rows:
        raise FileNotFoundError(f"{run_dir}: no finished evaluations to report yet")
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    agg = _aggregate(rows)
    methods = _methods(rows)
    present = {r["task"] for r in rows}
    heldout = [task_label(t) for t in settings["tasks"]["heldout"] if task_label(t) in present]
    ood = [task_label(t) for t in settings["tasks"]["out_of_domain"] if task_label(t) in present]
    domains = {name: ts for name, ts in (("in-domain", heldout), ("out-of-domain", ood)) if ts}
    seeds = sorted({r["seed"] for r in rows})
    n = sorted({r["n"] for r in rows})
    correct = item_correctness(run_dir)
    header = (f"model {settings['model']}, log-likelihood protocol, each task's preferred metric (acc_norm for "
              f"ARC / HellaSwag / PIQA, acc otherwise), test partition, {'/'.join(map(str, n))} items per task, "
              f"seeds {seeds} (± is the std over seeds, or the item standard error with one seed)")
    sections = [f"# {settings['name']}\n", header + "\n"]
    summary: dict[str, Any] = {"header": header, "domains": {}}
    grouped = tracks(rows)
    for domain, tasks in domains.items():
        majority = majority_rates(run_dir, tasks)
        floor = ("Majority-class rate of the two-choice tasks: "
                 + ", ".join(f"{t} {100 * r:.1f}" for t, r in majority.items()) + "\n") if majority else ""
        sections += [f"## {domain}\n", floor]
        tables, table_rows, zero_averages = [], [["track", "method", *tasks, "average"]], {}
        summary["domains"][domain] = {"tasks": tasks, "majority_rates": majority, "tracks": {}}
        for labels, members in grouped.items():
            track = track_name(labels)
            md, track_rows, averages = method_table(agg, members, tasks, track)
            judged = verdicts(correct, tasks, len(seeds), ANCHORS.get(labels, DEGAML_K), members)
            tables.append(f"### {track}\n\n{md}\n")
            table_rows += track_rows
            sections += [f"### {track}\n", md + "\n", "\n".join(judged) + "\n"]
            summary["domains"][domain]["tracks"][track] = {"methods": members, "averages": averages,
                                                           "verdicts": judged}
            zero_averages = averages if labels == 0 else zero_averages
        references = [m for m in methods if any(r["reference"] for r in rows if r["method"] == m)]
        if references:
            track = "reference"
            md, track_rows, _ = method_table(agg, references, tasks, track)
            judged = verdicts(correct, tasks, len(seeds), DEGAML, references)
            tables.append(f"### {track}\n\n{md}\n")
            table_rows += track_rows
            sections += [f"### {track}: selects the action on the target's labelled validation items, the best a "
                         "policy could choose\n", md + "\n", "\n".join(judged) + "\n"]
            summary["domains"][domain]["tracks"][track] = {"methods": references, "verdicts": judged}
        buffer = io.StringIO()
        csv.writer(buffer).writerows(table_rows)
        atomic_write_text(out / f"{domain}.md", "\n".join(tables))
        atomic_write_text(out / f"{domain}.csv", buffer.getvalue())
        stages = [(s, label) for s, label in ABLATION if s in zero_averages]
        ablation = [f"| stage | {domain} average | minus the stage before (paired 95% interval) |", "|---|---|---|"]
        for k, (stage, label) in enumerate(stages):
            d = paired_difference(correct, stage, stages[k - 1][0], tasks) if k else None
            ablation.append(f"| {label} | {100 * zero_averages[stage]:.1f} | {f'{d} ({d.verdict})' if d else '-'} |")
        atomic_write_text(out / f"ablation_{domain}.md", "\n".join(ablation) + "\n")
        sections += [f"### stage ablation ({domain})\n", "\n".join(ablation) + "\n"]
    actions = sorted({(r["task"], r["action"]) for r in rows if r["method"] == DEGAML and r["action"]})
    oracle = {(r["task"], r["seed"]): r["action"] for r in rows if r["method"] == ORACLE}
    if actions:
        sections += ["## the policy's choices\n", "\n".join(
            f"- {t}: {a}" + (f" (oracle: {', '.join(sorted({v for (u, _), v in oracle.items() if u == t}))})"
                             if any(u == t for u, _ in oracle) else "") for t, a in actions) + "\n"]
    costs = ["| method | seconds per target | peak RSS MB | labelled target examples |", "|---|---|---|---|"]
    for m in [m for members in grouped.values() for m in members] + ([ORACLE] if ORACLE in methods else []):
        group = [r for r in rows if r["method"] == m and r["seconds"] is not None]
        if group:
            peaks = [r["peak_rss_mb"] for r in group if r["peak_rss_mb"]]
            peak = f"{max(peaks):.0f}" if peaks else "-"
            costs.append(f"| {m} | {statistics.fmean(r['seconds'] for r in group):.2f} | {peak} | "
                         f"{group[0]['labelled_target_examples']} |")
    timings = {run.root.name: json.loads(run.timings.read_text()) for run in seed_runs(run_dir)
               if run.timings.is_file()}
    sections += ["## cost\n", "Seconds per target: generation + adaptation for DeGAML; meta-training (shared by a "
                 "fold's targets, counted in full) + target adaptation for the baselines. Peak RSS: the "
                 "process's peak while the method ran (one process runs everything, so the base model's "
                 "share is in every figure).\n", "\n".join(costs) + "\n",
                 "Wall time of each stage, and the process's peak resident memory by the end of it:\n",
                 _stage_table(timings) + "\n"]
    plots = _plots(agg, methods, domains, out)
    sections += ["## plots\n", "\n".join(f"![{p}]({p})" for p in plots) + "\n"]
    long_csv = io.StringIO()
    writer = csv.DictWriter(long_csv, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "scores.csv", long_csv.getvalue())
    atomic_write_text(out / "summary.json", json.dumps({**summary, "timings": timings}, indent=2))
    atomic_write_text(out / "report.md", "\n".join(sections))
    return out
