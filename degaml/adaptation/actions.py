"""Actions: a family and its hyper-parameters, as the policy chooses them and `degaml adapt --action` takes
them ("ttt steps=5 lr=0.0001"). Valid names, defaults and ranges come from the family's `CONFIG`; the
discretized action space from the families' `GRID`s."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..plugins import capability
from .apply import FAMILIES


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Action:
    family: str
    params: tuple[tuple[str, Any], ...] = ()
    cost: float = 0.0
    """Relative compute cost (e.g. optimizer steps or forward passes), used by the optional cost penalty."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; valid: {', '.join(FAMILIES)}")
        valid = [f.name for f in dataclasses.fields(FAMILIES[self.family].CONFIG)]
        for name, _ in self.params:
            if name not in valid:
                raise ValueError(f"unknown hyper-parameter {name!r} for family {self.family!r}; "
                                 f"valid: {', '.join(valid) or 'none'}")
        self.config()  # the family's range checks

    def config(self) -> Any:
        """The family's Config with these hyper-parameters (defaults for the rest)."""
        return FAMILIES[self.family].CONFIG(**dict(self.params))

    @property
    def label(self) -> str:
        return self.family + "".join(f" {k}={v}" for k, v in self.params)

    @property
    def slug(self) -> str:
        """The label as a directory name."""
        return self.family + "".join(f"_{k}-{v}" for k, v in self.params)

    def get(self, name: str, default: Any) -> Any:
        return dict(self.params).get(name, default)

    @property
    def needs_library(self) -> bool:
        """Whether its family reads the training tasks' adapters with these parameters (its `NEEDS_LIBRARY`)."""
        return bool(capability(FAMILIES[self.family], "NEEDS_LIBRARY", self.config()))

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "params": [list(p) for p in self.params], "cost": self.cost}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Action:
        return cls(data["family"], tuple((k, v) for k, v in data.get("params", [])), data.get("cost", 0.0))

    @classmethod
    def parse(cls, label: str, cost: float = 0.0) -> Action:
        """"family key=value ..." (the label syntax); values are integers, numbers (1e-4) or words (vote)."""
        family, *pairs = label.split()
        params = []
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"action {label!r}: {pair!r} is not key=value")
            params.append((key, _scalar(value)))
        return cls(family, tuple(params), cost)


def default_actions() -> list[Action]:
    """The discretized action space: every family's grid of hyper-parameters with its cost."""
    return [Action(name, tuple(params.items()), cost) for name, family in FAMILIES.items()
            for params, cost in family.GRID]
