"""The report of a `degaml run` directory, rebuilt from its artifacts alone (`degaml report <dir>`):
the paper's tables (in-domain and out-of-domain, methods x tasks, average) in two tracks by the labelled
target examples a method read (zero labels: DeGAML against the zero-label methods; k labels: DeGAML-k
against the k-label methods), each anchor's difference from every method of its track with a paired
bootstrap interval on the same items, the majority-class rate of two-choice tasks, the stage ablation
(base / +generalization / +adaptation), mean and spread over seeds, the generated adapter's and DeGAML's
comparisons for each seed alone (where a run has several), as CSV and Markdown, and PNG plots.
Nothing is recomputed. `rows` reads the records, `verdicts` compares on the same items, `tables` and `plots`
draw."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from ...data import task_label
from ...io import atomic_write_text
from ..experiment import Experiment
from ..layout import (
    ACTION_PREFIX,
    DEGAML,
    DEGAML_K,
    GENERATED,
    ORACLE,
    RANDOM_ACTION,
    RETRIEVAL,
    TARGET_FINETUNED,
    action_method,
    seed_runs,
)
from ..records import StageTimings
from .generator import change_cosines, comparisons, scaling, scaling_plot
from .plots import plots
from .protocols import answer_prior_section, protocol_section
from .rewards import reward_section
from .rows import aggregate, anchor_of, collect_rows, methods_in, missing_evaluations, track_name, tracks
from .summary import SUMMARY_FILE, DomainSummary, ReportSummary, TrackSummary
from .tables import ABLATION, cost_table, method_table, stage_table
from .verdicts import (
    UNIFORM_ACTION,
    expected_correctness,
    item_correctness,
    majority_rates,
    paired_difference,
    recovered_shares,
    verdicts,
)

__all__ = ["ReportSummary", "build_report"]


@dataclass(frozen=True)
class _Run:
    """What every section of a run's report reads: its settings, score rows and per-item correctness."""

    run_dir: Path
    settings: Experiment
    rows: list
    agg: dict
    methods: list[str]
    seeds: list[int]
    singles: list[str]
    """The single actions the run scored alone (`action-*`)."""
    correct: dict
    each_seed: dict
    """{seed: its correctness alone}, where the run has several seeds."""
    grouped: dict[int, list[str]]
    out: Path


def _recovered_share_section(ctx: _Run, domain: str, tasks: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """({floor: table rows}, sections) of the share of the target's own LoRA's gain over base and over union that
    the generated adapter recovers; nothing where the run has no target-finetuned ceiling."""
    shares = {floor: lines for floor in ("base", "union")
              if (lines := recovered_shares(ctx.correct, GENERATED, floor, TARGET_FINETUNED, tasks))}
    if not shares:
        return {}, []
    reading = ("seen tasks: the generator trained on these targets' own trajectories"
               if ctx.settings.holdout == "seen" else "held-out targets: the generator never saw them")
    sections = [f"### recovered share of the target's own LoRA's gain ({domain}; {reading})\n",
                "(generated - floor) / (target-finetuned - floor), paired bootstrap 95% intervals on the items all "
                "three scored; undefined where the own LoRA's gain over the floor ties zero\n"]
    for floor, lines in shares.items():
        sections += ["\n".join([f"| task | generated minus {floor} | target-finetuned minus {floor} | recovered "
                                "share |", "|---|---|---|---|", *lines]) + "\n"]
    return shares, sections


def _lookup_comparisons(ctx: _Run, tasks: list[str]) -> list[str]:
    """The retrieval floor against its prompt controls: what a lookup reads in the prompts."""
    if RETRIEVAL not in ctx.methods:
        return []
    controls = [m for m in ctx.settings.controls_of(RETRIEVAL) if m in ctx.methods]
    return comparisons(ctx.correct, tasks, controls, ctx.settings.evaluation.prior_tasks, subject=RETRIEVAL)


def _each_seed_sections(ctx: _Run, domain: str, tasks: list[str], others: list[str], adapted: list[str]) -> list[str]:
    """The generated adapter's and DeGAML's comparisons for each seed alone: a claim "on both seeds" is read
    here, not from their average."""
    sections = []
    for seed, alone in ctx.each_seed.items():
        tables = [comparisons(alone, tasks, others, ctx.settings.evaluation.prior_tasks),
                  comparisons(alone, tasks, adapted, ctx.settings.evaluation.prior_tasks, subject=DEGAML)]
        sections += [f"### seed {seed} alone ({domain})\n", "\n\n".join("\n".join(t) for t in tables if t) + "\n"]
    return sections


def _domain_report(ctx: _Run, domain: str, tasks: list[str]) -> tuple[list[str], DomainSummary, list[str]]:
    """One domain's sections of the report (its tracks' tables and verdicts, the ceilings, the stage ablation,
    the scaling curve, the recovered share, the generated adapter's and DeGAML's comparisons), its summary entry
    and the plots it drew; its tables are also written as Markdown and CSV."""
    run_dir, settings, rows, agg, methods = ctx.run_dir, ctx.settings, ctx.rows, ctx.agg, ctx.methods
    correct, seeds, singles, grouped, out = ctx.correct, ctx.seeds, ctx.singles, ctx.grouped, ctx.out
    plots_drawn: list[str] = []
    majority = majority_rates(run_dir, tasks)
    constant = ("Majority-class rate of the two-choice tasks: "
                + ", ".join(f"{t} {100 * r:.1f}" for t, r in majority.items()) + "\n") if majority else ""
    sections = [f"## {domain}\n", constant]
    tables, table_rows, zero_averages = [], [["track", "method", *tasks, "average"]], {}
    entry = DomainSummary(tasks, majority, {})
    for labels, members in grouped.items():
        track = track_name(labels)
        md, track_rows, averages = method_table(agg, members, tasks, track, settings.evaluation.protocols[0])
        uniform = [UNIFORM_ACTION] if labels == 0 and UNIFORM_ACTION in correct else []
        judged = verdicts(correct, tasks, len(seeds), anchor_of(labels), members + uniform)
        tables.append(f"### {track}\n\n{md}\n")
        table_rows += track_rows
        sections += [f"### {track}\n", md + "\n", "\n".join(judged) + "\n"]
        if uniform:
            sections += [f"{UNIFORM_ACTION}: the expected score of an action drawn uniformly per target from the "
                         f"{len(singles)} single actions (their per-item mean), which `random-action` draws once.\n"]
        entry.tracks[track] = TrackSummary(members, judged, averages)
        zero_averages = averages if labels == 0 else zero_averages
    ceilings = [m for m in methods if any(r.ceiling for r in rows if r.method == m)]
    if ceilings:
        track = "ceilings"
        md, track_rows, _ = method_table(agg, ceilings, tasks, track, settings.evaluation.protocols[0])
        judged = verdicts(correct, tasks, len(seeds), DEGAML, ceilings)
        tables.append(f"### {track}\n\n{md}\n")
        table_rows += track_rows
        sections += [f"### {track}: read target labels beyond any track's budget (the oracle: the action best on "
                     "the target's labelled validation items; target-finetuned: the target's own train labels)\n",
                     md + "\n", "\n".join(judged) + "\n"]
        entry.tracks[track] = TrackSummary(ceilings, judged)
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
    curve = scaling(correct, tasks, settings)
    if curve:
        sections += [f"### scaling curve ({domain}): generated minus union LoRA of the same meta-training tasks\n",
                     "\n".join(["| meta-training tasks | scope | generated minus union |", "|---|---|---|"]
                               + [f"| {k} | {scope} | {d} ({d.verdict}) |" for k, scope, d in curve]) + "\n"]
        if domain == "in-domain":
            plots_drawn.append(scaling_plot(curve, out))
    shares, shown = _recovered_share_section(ctx, domain, tasks)
    sections += shown
    entry.recovered_share = shares
    retrieval_controls = list(settings.controls_of(RETRIEVAL))
    others = [m for m in grouped.get(0, []) + ceilings if m not in retrieval_controls and m != action_method("none")]
    compared = comparisons(correct, tasks, others, settings.evaluation.prior_tasks)  # action-none is generated
    if compared:
        sections += [f"### the generated adapter against the other zero-label methods ({domain})\n",
                     "\n".join(compared) + "\n"]
        entry.generated_minus = compared
    # DeGAML against what issue 25's verdict names: the generated adapter, each action alone, a uniformly
    # random one (drawn and expected), the other policies, union LoRA and the oracle.
    adapted = [m for m in methods if m in (GENERATED, RANDOM_ACTION, "union", ORACLE)
               or (m.startswith((ACTION_PREFIX, f"{DEGAML}-")) and m not in (action_method("none"), DEGAML_K))]
    adapted += [UNIFORM_ACTION] if UNIFORM_ACTION in correct else []
    sections += _each_seed_sections(ctx, domain, tasks, others, adapted)
    looked_up = _lookup_comparisons(ctx, tasks)
    if looked_up:
        sections += [f"### the retrieval floor against its prompt controls ({domain}): what a lookup reads in "
                     "the prompts\n", "\n".join(looked_up) + "\n"]
        entry.retrieval_minus = looked_up
    return sections, entry, plots_drawn


def _diagnostics(run_dir: Path, settings: Experiment, rows: list) -> list[str]:
    """What explains the scores: where the generated change points (the run's adapters), the policy's choices."""
    sections = []
    cosines = change_cosines(run_dir, settings)
    if cosines:
        sections += ["## does the generated change point at the target's own adapter?\n",
                     "cos(dW_generated - dW_base, dW_target-finetuned); base: the generator's residual base (union "
                     "LoRA) or the mean adapter; sizes: ||dW_generated - dW_base|| and ||dW_target-finetuned||, each "
                     "over ||dW_base||\n", "\n".join(cosines) + "\n"]
    actions = sorted({(r.task, r.action) for r in rows if r.method == DEGAML and r.action})
    oracle = {(r.task, r.seed): r.action for r in rows if r.method == ORACLE}
    if actions:
        sections += ["## the policy's choices\n", "\n".join(
            f"- {t}: {a}" + (f" (oracle: {', '.join(sorted({v for (u, _), v in oracle.items() if u == t}))})"
                             if any(u == t for u, _ in oracle) else "") for t, a in actions) + "\n"]
    return sections


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    settings = Experiment.load(run_dir)
    protocols = settings.evaluation.protocols
    rows = collect_rows(run_dir, protocols[0])
    if not rows:
        raise FileNotFoundError(f"{run_dir}: no finished evaluations to report yet")
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(rows)
    methods = methods_in(rows)
    present = {r.task for r in rows}
    heldout = [task_label(t) for t in settings.tasks.heldout if task_label(t) in present]
    ood = [task_label(t) for t in settings.tasks.out_of_domain if task_label(t) in present]
    domains = {name: ts for name, ts in (("in-domain", heldout), ("out-of-domain", ood)) if ts}
    seeds = sorted({r.seed for r in rows})
    n = sorted({r.n for r in rows})
    singles = [m for m in methods if m.startswith(ACTION_PREFIX)]

    def correctness(seed: int | None = None):
        correct = item_correctness(run_dir, protocols[0], seed)
        if len(singles) > 1:
            correct[UNIFORM_ACTION] = expected_correctness(correct, singles)
        return correct

    correct = correctness()
    each_seed = {s: correctness(s) for s in seeds} if len(seeds) > 1 else {}
    scoring = ("log-likelihood protocol, each task's preferred metric (acc_norm for ARC / HellaSwag / PIQA, acc "
               "otherwise)" if protocols[0] == "loglikelihood" else "generative protocol, acc of the letter named")
    header = (f"model {settings.model.name}, {scoring}, {settings.evaluation.split} partition of partition seed "
              f"{settings.partition.seed}, {'/'.join(map(str, n))} items per task, "
              f"seeds {seeds} (± is the std over seeds, or the item standard error with one seed)")
    sections = [f"# {settings.name}\n", header + "\n"]
    missing = missing_evaluations(run_dir, rows, settings.seeds, [task_label(t) for t in settings.targets],
                                  protocols[0])
    if missing:
        sections += [f"**Incomplete: {len(missing)} evaluation(s) of this run are missing** (listed under "
                     "'missing evaluations'); the tables and verdicts below leave them out.\n"]
    summary = ReportSummary(header, {}, missing)
    grouped = tracks(rows)
    extra_plots: list[str] = []
    ctx = _Run(run_dir, settings, rows, agg, methods, seeds, singles, correct, each_seed, grouped, out)
    for domain, tasks in domains.items():
        domain_sections, entry, drawn_here = _domain_report(ctx, domain, tasks)
        sections += domain_sections
        summary.domains[domain] = entry
        extra_plots += drawn_here
    sections += protocol_section(run_dir, protocols, domains, settings.answer_format)
    sections += answer_prior_section(run_dir, protocols, domains)
    sections += _diagnostics(run_dir, settings, rows)
    sections += reward_section(run_dir, settings)
    costed = [m for members in grouped.values() for m in members] + ([ORACLE] if ORACLE in methods else [])
    summary.timings = {seed_run.root.name: StageTimings.load(seed_run.timings) for seed_run in seed_runs(run_dir)
                       if seed_run.timings.is_file()}
    sections += ["## cost\n", "Seconds per target: generation + adaptation for DeGAML; meta-training (shared by a "
                 "fold's targets, counted in full) + target adaptation for the baselines. Peak RSS: the "
                 "process's peak while the method ran (one process runs everything, so the base model's "
                 "share is in every figure).\n", cost_table(rows, costed) + "\n",
                 "Wall time of each stage, and the process's peak resident memory by the end of it:\n",
                 stage_table(summary.timings) + "\n"]
    if missing:
        sections += ["## missing evaluations\n", "\n".join(f"- {line}" for line in missing) + "\n"]
    drawn = plots(agg, methods, domains, out) + extra_plots
    sections += ["## plots\n", "\n".join(f"![{p}]({p})" for p in drawn) + "\n"]
    long_csv = io.StringIO()
    writer = csv.DictWriter(long_csv, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    atomic_write_text(out / "scores.csv", long_csv.getvalue())
    summary.save(out / SUMMARY_FILE)
    atomic_write_text(out / "report.md", "\n".join(sections))
    return out
