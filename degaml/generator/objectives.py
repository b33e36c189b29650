"""What the generator is trained to minimize, one small class per objective (registered in `OBJECTIVES`):
what it needs from a training step (checkpoint tokens to reconstruct, the base model to run the generated
adapter through) and how its loss is made from the step's terms.

- `reconstruction` (the paper): masked, variance-weighted MSE to a checkpoint of the task's trajectory;
- `task_loss` (Text-to-LoRA's SFT mode): the base model's loss on labelled examples of the task with the
  generated adapter applied (`function_space.AdapterLoss`: answer or choice loss, plus its anchor);
- `hybrid`: reconstruction + `task_loss_weight` x task loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Objective:
    name: str
    needs_targets: bool
    """Whether a step reconstructs checkpoint tokens (the `reconstruction` term)."""
    needs_model: bool
    """Whether a step runs the base model with the generated adapter (the task-loss terms)."""

    def loss(self, terms: dict[str, torch.Tensor], task_loss_weight: float, adapter_loss) -> torch.Tensor:
        raise NotImplementedError


class Reconstruction(Objective):
    def loss(self, terms, task_loss_weight, adapter_loss):
        return terms["reconstruction"]


class TaskLoss(Objective):
    def loss(self, terms, task_loss_weight, adapter_loss):
        return adapter_loss.loss(terms)


class Hybrid(Objective):
    def loss(self, terms, task_loss_weight, adapter_loss):
        return terms["reconstruction"] + task_loss_weight * adapter_loss.loss(terms)


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Reconstruction("reconstruction", needs_targets=True, needs_model=False),
    TaskLoss("task_loss", needs_targets=False, needs_model=True),
    Hybrid("hybrid", needs_targets=True, needs_model=True),
)}
