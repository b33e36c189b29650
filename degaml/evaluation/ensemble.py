"""Scoring an ensemble of adapters (test-time scaling, ABMLL's posterior samples): per item, K members'
per-choice log-likelihoods combined into one answer.

- `vote`: majority vote of the K argmax answers; ties go to the tied answer with the highest summed
  probability (softmax over the choices), then to the lowest index;
- `confidence`: the answer of the single adapter whose softmax over the choices is most peaked;
- `mean`: the argmax of the members' averaged softmax over the choices (Bayesian model averaging, used
  for adapters sampled from an ABMLL posterior).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ..data import MultipleChoiceItem
from .harness import TaskResult, normalization_texts
from .metrics import Prediction, mean_and_stderr, prediction_correctness

COMBINE_METHODS = ("vote", "confidence", "mean")


def combine(per_adapter_logprobs: Sequence[Sequence[float]], method: Literal["vote", "confidence", "mean"]) -> int:
    """Combine one item's per-choice log-likelihoods from K adapters (K x choices) into one answer."""
    scores = torch.tensor(per_adapter_logprobs, dtype=torch.float64)
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 2:
        raise ValueError(f"expected K x choices scores with K >= 1 and >= 2 choices, got shape {tuple(scores.shape)}")
    probs = torch.softmax(scores, dim=-1)
    if method == "confidence":
        best = int(probs.max(-1).values.argmax())
        return int(probs[best].argmax())
    if method == "mean":
        return int(probs.mean(0).argmax())
    if method != "vote":
        raise ValueError(f"unknown ensemble combination {method!r}; valid: vote, confidence, mean")
    votes = torch.bincount(scores.argmax(-1), minlength=scores.shape[1]).double()
    mass = probs.sum(0)
    # Lexicographic: votes first, probability mass second; argmax takes the first of exact ties.
    key = votes * (mass.sum() + 1) + mass
    return int(key.argmax())


def ensemble_results(members: Sequence[Sequence[TaskResult]], items_by_task: dict[str, Sequence[MultipleChoiceItem]],
                     method: str) -> list[TaskResult]:
    """Combine K members' log-likelihood results on the same items (test-time scaling): per item, the
    members' per-choice scores go through `combine`; acc_norm combines the length-normalized scores the
    same way."""
    combined = []
    for per_member in zip(*members):
        first = per_member[0]
        if any(r.protocol != "loglikelihood" for r in per_member):
            raise ValueError("test-time scaling ensembles are scored with the log-likelihood protocol")
        items = items_by_task[first.task]
        predictions = []
        for k, item in enumerate(items):
            scores = [r.predictions[k].logprobs for r in per_member]
            lengths = [max(len(t), 1) for t in normalization_texts(item)]
            normed = [[s / n for s, n in zip(row, lengths)] for row in scores]
            predictions.append(Prediction(item.id, item.gold, combine(scores, method), combine(normed, method),
                                          member_logprobs=scores))
        acc, acc_se = mean_and_stderr(prediction_correctness(predictions, "acc"))
        norm, norm_se = mean_and_stderr(prediction_correctness(predictions, "acc_norm"))
        metrics = {"acc": acc, "acc_stderr": acc_se, "acc_norm": norm, "acc_norm_stderr": norm_se}
        combined.append(TaskResult(first.task, "loglikelihood", first.split, len(items), metrics,
                                   sum(r.seconds for r in per_member), predictions))
    return combined
