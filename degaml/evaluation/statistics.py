"""Paired comparisons of two methods scored on the same items.

The paired bootstrap resamples items (within each task, so every task keeps its size), recomputes the
difference of the two methods' accuracies (averaged over tasks with equal weight, as the tables average
them), and reports the 2.5% and 97.5% quantiles. An interval that spans 0 is a tie.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    difference: float
    """Mean over tasks of (accuracy of A - accuracy of B), in points."""
    low: float
    high: float
    items: int
    tasks: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "beats"
        if self.high < 0:
            return "loses to"
        return "ties"

    def __str__(self) -> str:
        return f"{self.difference:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def paired_bootstrap(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]], resamples: int = 10_000,
                     seed: int = 0) -> PairedDifference:
    """`a[task]`, `b[task]`: per-item correctness (0/1) of methods A and B on the same items, in the same order."""
    if a.keys() != b.keys() or not a:
        raise ValueError(f"the two methods must be scored on the same tasks: {sorted(a)} vs {sorted(b)}")
    rng = np.random.default_rng(seed)
    per_task = []
    for task in a:
        x, y = np.asarray(a[task], dtype=float), np.asarray(b[task], dtype=float)
        if x.shape != y.shape or x.size == 0:
            raise ValueError(f"task {task!r}: {x.size} items for A, {y.size} for B (need the same, non-empty)")
        diff = x - y
        picks = rng.integers(0, diff.size, size=(resamples, diff.size))
        per_task.append((diff.mean(), diff[picks].mean(1)))
    point = 100 * float(np.mean([p for p, _ in per_task]))
    samples = 100 * np.mean([s for _, s in per_task], axis=0)
    low, high = np.quantile(samples, [0.025, 0.975])
    return PairedDifference(point, float(low), float(high), sum(len(a[t]) for t in a), len(a))
