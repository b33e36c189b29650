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


@dataclass(frozen=True)
class RecoveredShare:
    """How much of a ceiling's gain over a floor a method recovers: (method - floor) / (ceiling - floor), the
    differences averaged over tasks, with a paired bootstrap interval (items resampled jointly for the three)."""

    share: float
    low: float
    high: float
    gain: PairedDifference
    """method minus floor."""
    headroom: PairedDifference
    """ceiling minus floor: when its interval spans 0 there is no gain to recover, and the share means nothing."""

    @property
    def defined(self) -> bool:
        return self.headroom.low > 0

    def __str__(self) -> str:
        if not self.defined:
            return f"undefined (headroom {self.headroom}: no gain to recover)"
        return f"{self.share:.2f} [{self.low:.2f}, {self.high:.2f}]"


def recovered_share(method: Mapping[str, Sequence[float]], floor: Mapping[str, Sequence[float]],
                    ceiling: Mapping[str, Sequence[float]], resamples: int = 10_000, seed: int = 0) -> RecoveredShare:
    """(method - floor) / (ceiling - floor) over the tasks of the three per-item correctness maps (same items,
    same order), with the 2.5% and 97.5% quantiles of the ratio over joint item resamples."""
    if not (method.keys() == floor.keys() == ceiling.keys()) or not method:
        raise ValueError("the three methods must be scored on the same tasks")
    rng = np.random.default_rng(seed)
    gains, rooms = [], []
    for task in method:
        m, f, c = (np.asarray(x[task], dtype=float) for x in (method, floor, ceiling))
        if not (m.shape == f.shape == c.shape) or m.size == 0:
            raise ValueError(f"task {task!r}: the three methods must score the same, non-empty items")
        picks = rng.integers(0, m.size, size=(resamples, m.size))
        gains.append(((m - f).mean(), (m - f)[picks].mean(1)))
        rooms.append(((c - f).mean(), (c - f)[picks].mean(1)))
    gain, room = np.mean([g for g, _ in gains]), np.mean([r for r, _ in rooms])
    samples_gain, samples_room = np.mean([s for _, s in gains], axis=0), np.mean([s for _, s in rooms], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = samples_gain / samples_room
    low, high = np.quantile(ratios[np.isfinite(ratios)], [0.025, 0.975]) if np.isfinite(ratios).any() else (np.nan,) * 2
    return RecoveredShare(float(gain / room) if room else float("nan"), float(low), float(high),
                          paired_bootstrap(method, floor, resamples, seed), paired_bootstrap(ceiling, floor, resamples, seed))
