"""Accuracy metrics as lm-evaluation-harness defines them for multiple choice."""

from __future__ import annotations

import math
from collections.abc import Sequence


def argmax(values: Sequence[float]) -> int:
    """First index of the maximum (numpy's tie-breaking, which the harness inherits)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def predict_acc(logprobs: Sequence[float]) -> int:
    return argmax(logprobs)


def predict_acc_norm(logprobs: Sequence[float], choices: Sequence[str]) -> int:
    """Log-likelihood divided by the choice's length in characters (the harness's `acc_norm`)."""
    return argmax([lp / max(len(c), 1) for lp, c in zip(logprobs, choices)])


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
