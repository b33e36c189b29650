"""The report's protocol section, for runs scored in both protocols (`evaluation.protocol: both`): each
zero-label method's average in the log-likelihood and the generative protocol, and the gains that matter
(generalization over the base model, adaptation over generalization, the generator over union LoRA) in each
protocol with their paired intervals, so that a gain that is only the model learning the answer format shows
as one that does not survive the change of protocol."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from ...evaluation.harness import read_results
from ..layout import BASE, DEGAML, GENERATED, seed_runs
from .rows import collect_rows
from .verdicts import item_correctness, paired_difference

FORMATS = {"loglikelihood": "log-likelihood protocol's answer format (the answer text after the question)",
           "generative": "generative protocol's answer format (the bracketed letter after the lettered options)"}
GAINS = ((GENERATED, BASE, "generalization: generated minus base"),
         (DEGAML, GENERATED, "adaptation: DeGAML minus generated"),
         (DEGAML, BASE, "both: DeGAML minus base"),
         (GENERATED, "union", "the generator over union LoRA"))


def protocol_section(run_dir: Path, protocols: list[str], domains: dict[str, list[str]], trained_format: str
                     ) -> list[str]:
    """Markdown lines (empty unless the run scored more than one protocol). `trained_format`: the answer format
    every LoRA of the run learned (`Experiment.answer_format`)."""
    if len(protocols) < 2:
        return []
    correct = {p: item_correctness(run_dir, p) for p in protocols}
    averages, unparseable = {}, {}
    for protocol in protocols:
        by_method: dict[tuple[str, str], list[float]] = {}
        shares: dict[tuple[str, str], list[float]] = {}  # generative answers naming no valid letter
        for row in collect_rows(run_dir, protocol):
            if not row.labelled_target_examples:
                by_method.setdefault((row.method, row.task), []).append(row.score)
                if row.unparseable is not None:
                    shares.setdefault((row.method, row.task), []).append(row.unparseable)
        averages[protocol] = {key: statistics.fmean(v) for key, v in by_method.items()}
        unparseable.update({key: statistics.fmean(v) for key, v in shares.items()})
    lines = ["## log-likelihood against the generative protocol\n",
             "Zero-label methods; acc_norm or acc (log-likelihood) and acc of the letter named (generative). "
             "A gain that holds in one protocol and not the other is about the answer format, not the task. "
             f"Every LoRA of this run learned the {FORMATS[trained_format]}, so in the other protocol an adapted "
             "model also meets an answer format it was not trained on (the unparseable answers of each "
             "generative result count as wrong).\n"]
    for domain, tasks in domains.items():
        methods = sorted({m for p in protocols for (m, t) in averages[p] if t in tasks})
        lines += [f"### {domain}\n", "| method | " + " | ".join(protocols) + " | generative answers naming no valid "
                  "letter |", "|---|" + "---|" * (len(protocols) + 1)]
        for m in methods:
            cells = []
            for p in protocols:
                scores = [averages[p].get((m, t)) for t in tasks]
                cells.append(f"{100 * statistics.fmean(scores):.1f}" if None not in scores else "-")
            shares = [unparseable.get((m, t)) for t in tasks]
            cells.append(f"{100 * statistics.fmean(shares):.1f}%" if None not in shares else "-")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "| gain | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
        for a, b, label in GAINS:
            cells = []
            for p in protocols:
                d = paired_difference(correct[p], a, b, tasks)
                cells.append(f"{d} ({d.verdict}, {d.items} items)" if d else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def answer_prior_section(run_dir: Path, protocols: list[str], domains: dict[str, list[str]]) -> list[str]:
    """Markdown lines (empty unless the run scored the generative protocol): per method, how often it named the
    letter it named most on a task, against how often the most common gold letter is right. A LoRA that learned
    the answer format and a letter prior, not the task, names one letter for nearly every item."""
    if "generative" not in protocols:
        return []
    modal: dict[tuple[str, str], list[float]] = {}
    gold: dict[str, float] = {}
    for run in seed_runs(run_dir):
        for method_dir in run.evaluated("generative"):
            predictions = read_results(method_dir.results_for("generative"))[0].predictions
            named = Counter(p.pred for p in predictions)
            modal.setdefault((method_dir.method, method_dir.task), []).append(max(named.values()) / len(predictions))
            gold[method_dir.task] = max(Counter(p.gold for p in predictions).values()) / len(predictions)
    lines = ["## the answer prior (generative protocol)\n",
             "The share of a task's items on which a method named its most-named letter (an unparseable answer "
             "counts as one more letter), averaged over tasks. 100% is one answer for every item, whatever the "
             "question. The gold row is the most common right letter's share: what a constant answer scores at "
             "best.\n"]
    for domain, tasks in domains.items():
        methods = sorted({m for (m, t) in modal if t in tasks})
        lines += [f"### {domain}\n", "| method | " + " | ".join(tasks) + " | average |",
                  "|---|" + "---|" * (len(tasks) + 1)]
        for m in methods:
            shares = [statistics.fmean(modal[(m, t)]) if (m, t) in modal else None for t in tasks]
            average = f"{100 * statistics.fmean(shares):.0f}%" if None not in shares else "-"
            lines.append(f"| {m} | " + " | ".join(f"{100 * v:.0f}%" if v is not None else "-" for v in shares)
                         + f" | {average} |")
        if all(t in gold for t in tasks):
            lines.append("| gold | " + " | ".join(f"{100 * gold[t]:.0f}%" for t in tasks)
                         + f" | {100 * statistics.fmean(gold[t] for t in tasks):.0f}% |")
        lines.append("")
    return lines
