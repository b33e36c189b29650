"""Accuracy metrics as lm-evaluation-harness defines them for multiple choice."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """One scored item, as results.json logs it per item (lm-evaluation-harness's `--log_samples`): the gold
    option, the predictions under acc and acc_norm, and what they were made from. A field that does not apply
    is left out of the file: log-likelihood rows have `logprobs` (each option's), calibrated ones also
    `raw_logprobs` (before calibration), ensembles `member_logprobs` (one row per member) instead, generative
    ones the generated `output` and no `pred_norm` (a generative ensemble each member's, `member_outputs`); a
    generative `pred` of None is an unparseable answer."""

    id: str
    gold: int
    pred: int | None
    pred_norm: int | None = None
    logprobs: list[float] | None = None
    raw_logprobs: list[float] | None = None
    member_logprobs: list[list[float]] | None = None
    output: str | None = None
    member_outputs: list[str] | None = None

    @property
    def options(self) -> int | None:
        """How many options were scored (None for a generative row, which scores none)."""
        scores = self.logprobs if self.logprobs is not None else (self.member_logprobs or [None])[0]
        return len(scores) if scores is not None else None

    def correct(self, metric: str = "acc") -> float:
        """1.0 where the prediction under `metric` (acc: `pred`, acc_norm: `pred_norm`) is the gold option."""
        return float((self.pred_norm if metric == "acc_norm" else self.pred) == self.gold)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "pred"}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Prediction:
        unknown = sorted(set(record) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown prediction field(s) {unknown}")
        return cls(**record)


def argmax(values: Sequence[float]) -> int:
    """First index of the maximum (numpy's tie-breaking, which the harness inherits)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def predict_acc(logprobs: Sequence[float]) -> int:
    return argmax(logprobs)


def predict_acc_norm(logprobs: Sequence[float], choices: Sequence[str]) -> int:
    """Log-likelihood divided by the choice's length in characters (the harness's `acc_norm`)."""
    return argmax([lp / max(len(c), 1) for lp, c in zip(logprobs, choices)])


def prediction_correctness(predictions: Sequence[Prediction], metric: str) -> list[float]:
    """Each scored item's correctness (1.0 or 0.0) under `acc` (its `pred`) or `acc_norm` (its `pred_norm`)."""
    return [p.correct(metric) for p in predictions]


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
