"""What every adaptation family shares: the context it works in, what it returns, how it reports an unmet
budget or a fallback, and the range checks its `CONFIG` runs.

A family is one module under the plug-in convention of `degaml/plugins.py` (PEFT style): `NAME`, `CONFIG` (a
dataclass: the family's hyper-parameters, their defaults and range checks, once), `OUTPUT` and
`NEEDS_LIBRARY` (what it writes and whether it reads the training tasks' adapters, constants or functions of
its config), `GRID` (the (parameters, cost) points the policy chooses among) and
`apply(ctx, config, out, info) -> info` (refine the generated adapter and write an adapted output).
`apply.py` registers them in `FAMILIES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..config import LoraSettings
from ..data import MultipleChoiceItem
from ..models import LoadedModel, LoraState, write_adapter
from ..models.generation_record import GenerationRecord


class BudgetError(ValueError):
    """A budget the family cannot meet, or a hyper-parameter out of range; reported, never truncated."""


@dataclass
class AdaptationContext:
    lm: LoadedModel
    """The base model, with no adapter attached; families attach and remove their own."""
    lora: LoraSettings
    base_model: str
    generate: Callable[..., tuple[LoraState, GenerationRecord]]
    """(prompt-sample seed, optional indices of the prompts to draw from) -> (generated LoRA state, what it was
    generated from). Only ever run forward."""
    prompts: Sequence[str]
    """The task's unlabelled adaptation prompts."""
    items: Sequence[MultipleChoiceItem] = ()
    """The same prompts as items with their options, answers removed (`blind`): what choice-level objectives
    read. Empty when the caller has bare prompt strings."""
    library: Sequence[LoraState] = field(default_factory=list)
    """Adapters LoraHub may mix with the generated one (never the target task's own)."""
    seed: int = 0


@dataclass
class AdaptationResult:
    family: str
    state: LoraState
    """The adapted LoRA state (the input state when the family fell back)."""
    hyperparameters: dict[str, Any]
    seconds: float
    fell_back: bool = False
    reason: str = ""
    """Why the family fell back to the unadapted adapter (e.g. a non-finite loss)."""
    trace: list[float] = field(default_factory=list)
    """Per-step objective (loss), for inspection."""
    details: dict[str, Any] = field(default_factory=dict)
    """What else the family reports (e.g. how many pseudo-labels it kept)."""


def check_range(where: str, value: Any, low: float, high: float, integer: bool = False,
                open_low: bool = False) -> None:
    valid = (not integer or (isinstance(value, int) and not isinstance(value, bool))) \
        and isinstance(value, int | float) and (low < value if open_low else low <= value) and value <= high
    if not valid:
        kind = "an integer" if integer else "a number"
        raise BudgetError(f"{where} = {value!r} is out of range: must be {kind} in "
                          f"{'(' if open_low else '['}{low}, {high}]")


def check_choice(where: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise BudgetError(f"{where} = {value!r} is out of range: must be one of {', '.join(choices)}")


def write_refined(ctx: AdaptationContext, out: Path, state: LoraState, info: dict[str, Any],
                  latent_delta: torch.Tensor | None = None) -> dict[str, Any]:
    """Write a refined adapter (an adapted output of kind plain or latent) with its record; return the record."""
    write_adapter(state, ctx.lora, ctx.base_model, out, info, latent_delta=latent_delta)
    return info


@dataclass(frozen=True)
class Refinement:
    """What every adapted output's record says of its refinement, written flat into its degaml.json (tts.json
    for an ensemble) and read back through this class."""

    seconds: float
    """Generation and refinement, wall clock."""
    fell_back: bool = False
    """The family could not refine (e.g. a non-finite loss) and wrote the generated adapter."""
    reason: str = ""

    def to_info(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_info(cls, info: dict[str, Any], where: str = "degaml.json") -> Refinement:
        if "seconds" not in info:
            raise ValueError(f"{where}: an adapted output's record lacks seconds")
        return cls(**{f.name: info[f.name] for f in fields(cls) if f.name in info})


def outcome(result: AdaptationResult, started: float) -> dict[str, Any]:
    """What an output's record says about the refinement: `Refinement`, the family's own time and its trace."""
    done = Refinement(time.perf_counter() - started, result.fell_back, result.reason)
    return {**done.to_info(), "adaptation_seconds": result.seconds, "trace": result.trace, **result.details}


def blind(item: MultipleChoiceItem) -> MultipleChoiceItem:
    """`item` with its answer removed (gold 0 for every item), for the label-free families."""
    return replace(item, gold=0)
