"""Scoring an ensemble of adapters (test-time scaling, ABMLL's posterior samples): per item, K members'
per-choice log-likelihoods combined into one answer.

- `vote`: majority vote of the K argmax answers; ties go to the tied answer with the highest summed
  probability (softmax over the choices), then to the lowest index;
- `confidence`: the answer of the single adapter whose softmax over the choices is most peaked;
- `mean`: the argmax of the members' averaged softmax over the choices (Bayesian model averaging, used
  for adapters sampled from an ABMLL posterior).

In the generative protocol no member scores the options, so every combination is a plurality vote of the letters
the members named (`vote_letters`).
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


def vote_letters(answers: Sequence[int | None]) -> int | None:
    """One item's answer from K members' named options (None: unparseable): the option most members named; a tie
    goes to the tied option named first (members in order); None only when no member named a valid option."""
    named = [a for a in answers if a is not None]
    if not named:
        return None
    most = max(named.count(a) for a in named)
    return next(a for a in named if named.count(a) == most)


def _voted_generations(per_member: Sequence[TaskResult]) -> TaskResult:
    """K members' generative results on the same items, combined by `vote_letters`; each member's output kept."""
    first = per_member[0]
    predictions = []
    for rows in zip(*(r.predictions for r in per_member)):
        if len({p.id for p in rows}) != 1:
            raise ValueError(f"task {first.task!r}: ensemble members scored different items ({[p.id for p in rows]})")
        predictions.append(Prediction(rows[0].id, rows[0].gold, vote_letters([p.pred for p in rows]),
                                      member_outputs=[p.output or "" for p in rows]))
    acc, acc_se = mean_and_stderr(prediction_correctness(predictions, "acc"))
    metrics = {"acc": acc, "acc_stderr": acc_se, "unparseable": float(sum(p.pred is None for p in predictions))}
    return TaskResult(first.task, "generative", first.split, len(predictions), metrics,
                      sum(r.seconds for r in per_member), predictions)


def ensemble_results(members: Sequence[Sequence[TaskResult]], items_by_task: dict[str, Sequence[MultipleChoiceItem]],
                     method: str) -> list[TaskResult]:
    """Combine K members' results on the same items (test-time scaling, ABMLL's posterior samples). Log-likelihood:
    per item, the members' per-choice scores go through `combine`, and acc_norm combines the length-normalized
    scores the same way. Generative: a plurality vote of the letters named, whatever `method` is."""
    combined = []
    for per_member in zip(*members):
        first = per_member[0]
        if len({r.protocol for r in per_member}) != 1:
            raise ValueError(f"task {first.task!r}: ensemble members were scored in different protocols")
        if first.protocol == "generative":
            combined.append(_voted_generations(per_member))
            continue
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
