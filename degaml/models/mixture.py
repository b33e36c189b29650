"""LoraHub's weight search (Huang et al. 2023): the weights of a weighted adapter sum, A = sum_k w_k A_k and
B = sum_k w_k B_k, found gradient-free (bounded Powell) to minimise an objective plus an L1 penalty. The
label-free mixing family and the labelled LoraHub baseline differ only in the objective they hand in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from .lora import LoraState, weighted_adapter_sum


@dataclass
class MixtureSearch:
    weights: list[float]
    state: LoraState
    trace: list[float] = field(default_factory=list)
    """The penalized objective at every evaluation, the first at the initial weights."""
    fell_back: bool = False
    """No finite objective anywhere: the initial weights, unexamined."""


def search_mixture(states: Sequence[LoraState], objective: Callable[[LoraState], float], max_evaluations: int,
                   l1: float, bound: float = 1.5, initial: Sequence[float] | None = None) -> MixtureSearch:
    """Weights in [-bound, bound] minimizing objective + l1 * sum |w|, from `initial` (the first adapter alone by
    default); the initial weights are kept unless the search finds a lower value."""
    if max_evaluations < 1:
        raise ValueError(f"max_evaluations must be >= 1, got {max_evaluations}")
    trace: list[float] = []

    def penalized(weights: np.ndarray) -> float:
        value = objective(weighted_adapter_sum(states, weights)) + l1 * float(np.abs(weights).sum())
        trace.append(value)
        return value if np.isfinite(value) else float("inf")

    x0 = np.array(initial, dtype=float) if initial is not None else np.eye(len(states))[0]
    if x0.shape != (len(states),):
        raise ValueError(f"initial has {x0.size} weights for {len(states)} adapters")
    result = minimize(penalized, x0, method="Powell", bounds=[(-bound, bound)] * len(states),
                      options={"maxfev": max_evaluations, "xtol": 1e-3})
    weights = result.x if np.isfinite(result.fun) and result.fun <= penalized(x0) else x0
    fell_back = bool(np.array_equal(weights, x0)) and not np.isfinite(result.fun)
    return MixtureSearch([float(w) for w in weights], weighted_adapter_sum(states, weights), trace, fell_back)
