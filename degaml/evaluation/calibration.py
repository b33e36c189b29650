"""Label-free calibration of multiple-choice scores: a floor that an answer prior cannot beat. A method that
only moves a task's answer prior (more "yes" on a task whose items are mostly "yes") is matched by its
calibrated base model at no cost; a method that knows the task is not. Calibration reads the unlabelled test
inputs only, never a label.

- **Batch calibration** (Zhou et al., ICLR 2024) for a task whose items all offer the same options (BoolQ's
  yes / no): each option's probability (a softmax over the item's options) is divided by its mean over the
  task's test items, which removes the prior the model puts on that option whatever the input.
- **Domain-conditional PMI** (Holtzman et al., EMNLP 2021) for cloze items with free-text options (ARC,
  HellaSwag, PIQA): an option's log-likelihood after the item's context minus its log-likelihood after the
  domain premise `DOMAIN_PREMISE` alone, which removes how likely the option's words are anyway.
- Partial scoring (WinoGrande: one context per option, a shared continuation) is left as it is: its options
  are scored by the same continuation, so neither prior applies.

The calibrated prediction is the argmax of the calibrated scores, for `acc` and `acc_norm` alike (PMI
already divides out an option's length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from ..data import MultipleChoiceItem
from ..models import LoadedModel
from .harness import TaskResult
from .loglikelihood import LoglikelihoodScorer
from .metrics import mean_and_stderr, prediction_correctness

DOMAIN_PREMISE = "Answer:"
Kind = str
"""`batch`, `pmi` or `none`: which calibration a task's items get."""


def calibration_kind(items: Sequence[MultipleChoiceItem]) -> Kind:
    if not all(item.shares_context for item in items):
        return "none"
    return "batch" if all(item.choices == items[0].choices for item in items) else "pmi"


def premise_items(items: Sequence[MultipleChoiceItem]) -> list[MultipleChoiceItem]:
    """Each item's options after the domain premise instead of its context (PMI's denominator)."""
    return [MultipleChoiceItem.cloze(item.id, DOMAIN_PREMISE, DOMAIN_PREMISE, item.choices, item.gold) for item in items]


def _log_softmax(row: Sequence[float]) -> list[float]:
    top = max(row)
    total = math.log(sum(math.exp(v - top) for v in row)) + top
    return [v - total for v in row]


def calibrated_scores(kind: Kind, logprobs: Sequence[Sequence[float]],
                      premise_logprobs: Sequence[Sequence[float]] | None = None) -> list[list[float]]:
    """Calibrated score of every option of every item (`premise_logprobs`: PMI's, the same items' options
    scored after `DOMAIN_PREMISE`)."""
    if kind == "batch":
        probs = [[math.exp(v) for v in _log_softmax(row)] for row in logprobs]
        prior = [sum(p[k] for p in probs) / len(probs) for k in range(len(probs[0]))]
        return [[math.log(max(p[k], 1e-300)) - math.log(max(prior[k], 1e-300)) for k in range(len(p))] for p in probs]
    if kind == "pmi":
        if premise_logprobs is None:
            raise ValueError("PMI calibration needs the options' log-likelihoods after the domain premise")
        return [[v - u for v, u in zip(row, base)] for row, base in zip(logprobs, premise_logprobs)]
    return [list(row) for row in logprobs]


def calibrated_result(result: TaskResult, kind: Kind, premise_logprobs: Sequence[Sequence[float]] | None = None
                      ) -> TaskResult:
    """`result` (log-likelihood protocol) with every prediction made from calibrated scores."""
    if result.protocol != "loglikelihood":
        raise ValueError(f"task {result.task!r}: calibration needs the log-likelihood protocol's option scores")
    scores = calibrated_scores(kind, [p.logprobs for p in result.predictions], premise_logprobs)
    predictions = []
    for p, row in zip(result.predictions, scores):
        choice = max(range(len(row)), key=row.__getitem__)
        predictions.append(replace(p, logprobs=row, raw_logprobs=p.logprobs, pred=choice, pred_norm=choice))
    acc, se = mean_and_stderr(prediction_correctness(predictions, "acc"))
    metrics = {"acc": acc, "acc_stderr": se, "acc_norm": acc, "acc_norm_stderr": se}
    return TaskResult(result.task, result.protocol, result.split, result.num_items, metrics, result.seconds,
                      predictions)


def calibrate(lm: LoadedModel, result: TaskResult, items: Sequence[MultipleChoiceItem], batch_size: int
              ) -> tuple[TaskResult, Kind]:
    """`result` (the log-likelihood scores of `items` under the model as it is now, adapter applied) calibrated,
    and the calibration its items got; PMI scores the options after the domain premise under that same model."""
    kind = calibration_kind(items)
    premise = None
    if kind == "pmi":
        rows = LoglikelihoodScorer(lm, batch_size=batch_size).score(premise_items(items), False, result.task)
        premise = [[s.logprob for s in row] for row in rows]
    return calibrated_result(result, kind, premise), kind
