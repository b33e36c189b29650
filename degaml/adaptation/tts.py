"""Test-time scaling: K adapters generated from K different prompt samples, their answers combined.

With log-likelihood scoring each adapter gives per-choice log-likelihoods for an item:
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

TTS_FILE = "tts.json"
"""In an ensemble directory: {"combine": method, "members": [member adapter dirs, relative]}."""


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
