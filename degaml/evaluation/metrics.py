"""Accuracy metrics as lm-evaluation-harness defines them for multiple choice."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def argmax(values: Sequence[float]) -> int:
    """First index of the maximum (numpy's tie-breaking, which the harness inherits)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def predict_acc(logprobs: Sequence[float]) -> int:
    return argmax(logprobs)


def predict_acc_norm(logprobs: Sequence[float], choices: Sequence[str]) -> int:
    """Log-likelihood divided by the choice's length in characters (the harness's `acc_norm`)."""
    return argmax([lp / max(len(c), 1) for lp, c in zip(logprobs, choices)])


def prediction_correctness(predictions: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    """Each scored item's correctness (1.0 or 0.0) under `acc` (its `pred`) or `acc_norm` (its `pred_norm`)."""
    key = "pred_norm" if metric == "acc_norm" else "pred"
    return [float(p[key] == p["gold"]) for p in predictions]


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error with the sample standard deviation (n - 1), as the harness reports."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)
