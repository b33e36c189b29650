"""DeGAML-k's supervised choice: with k labelled target examples, the adaptation module decides whether
supervised steps help and from which starting adapter, instead of always fine-tuning the generated one.

The k examples are split once (seeded) into a fitting part and a selection part. Every starting adapter
(the generated one; the policy's label-free adaptation of it, when that is a plain adapter of its own) is a
candidate as it is and after the budget's optimizer steps on the fitting part; the candidate with the
lowest answer loss on the selection part is the result. Selection examples are never trained on, so a
fine-tuned candidate cannot win by memorising them. The result is not refit on all k: every candidate keeps
the same optimizer-step budget as the k-label baselines, and it reads the same k labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..config import LoraSettings
from ..models import LoadedModel, LoraState
from ..sft import Example, examples_loss, fine_tune

FINE_TUNED = " + fine-tune"
"""Suffix of a candidate's name when it took the supervised steps."""


@dataclass
class SupervisedChoice:
    state: LoraState
    choice: str
    """The winning candidate, e.g. "generated + fine-tune"."""
    selection_losses: dict[str, float]
    """Every candidate's answer loss on the selection examples."""
    fit_examples: int
    selection_examples: int
    support_losses: dict[str, list[float]] = field(default_factory=dict)
    """The fine-tuned candidates' training losses."""

    def record(self) -> dict:
        """Everything but the weights, for the output's degaml.json."""
        return {"choice": self.choice, "selection_losses": self.selection_losses, "fit_examples": self.fit_examples,
                "selection_examples": self.selection_examples, "support_losses": self.support_losses}


def split_support(support: Sequence[Example], select: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(fitting part, selection part): `select` examples drawn without replacement, seeded."""
    if not 0 < select < len(support):
        raise ValueError(f"select = {select}: must leave at least one of the {len(support)} support examples on "
                         f"each side of the split")
    order = torch.randperm(len(support), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:select])
    return [e for i, e in enumerate(support) if i not in held], [support[i] for i in sorted(held)]


def choose_supervised(lm: LoadedModel, lora: LoraSettings, starts: Mapping[str, LoraState],
                      support: Sequence[Example], select: int, steps: int, lr: float, batch_size: int, seed: int
                      ) -> SupervisedChoice:
    """The candidate (each of `starts`, as it is and fine-tuned on the fitting part) with the lowest answer
    loss on the `select` held-out support examples."""
    if not starts:
        raise ValueError("choose_supervised needs at least one starting adapter")
    fit, held = split_support(support, select, seed)
    candidates: dict[str, LoraState] = {}
    traces: dict[str, list[float]] = {}
    for name, start in starts.items():
        candidates[name] = start
        if steps > 0:
            candidates[name + FINE_TUNED], traces[name + FINE_TUNED] = fine_tune(
                lm, lora, fit, steps, lr, batch_size, seed, init=start)
    losses = {name: examples_loss(lm, lora, state, held) for name, state in candidates.items()}
    best = min(losses, key=losses.__getitem__)
    return SupervisedChoice(candidates[best], best, losses, len(fit), len(held), traces)
