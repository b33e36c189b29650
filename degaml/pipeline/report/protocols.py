"""The report's protocol section, for runs scored in both protocols (`evaluation.protocol: both`): each
zero-label method's average in the log-likelihood and the generative protocol, and the gains that matter
(generalization over the base model, adaptation over generalization, the generator over union LoRA) in each
protocol with their paired intervals, so that a gain that is only the model learning the answer format shows
as one that does not survive the change of protocol."""

from __future__ import annotations

import statistics
from pathlib import Path

from ..layout import BASE, DEGAML, GENERATED
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

