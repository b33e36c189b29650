"""Seeded, disjoint train / validation / test partitions of a task's labelled items.

There are no train splits offline, so every task's labelled data is partitioned here. An item's place
depends only on (task, seed, item id), never on file order, so partitions are stable across runs and
machines. The order inside a partition is the same seeded hash order, so `limit` takes a random but
reproducible subset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .example import MultipleChoiceItem

SPLITS = ("train", "validation", "test")


class PartitionOverlapError(ValueError):
    """The same item id would be in two partitions."""


def _rank(task: str, seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{task}\x00{seed}\x00{item_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Partition:
    task: str
    seed: int
    validation_fraction: float
    test_fraction: float
    ids: dict[str, tuple[str, ...]]
    """Split name -> item ids, in seeded order."""

    def __post_init__(self) -> None:
        self.check_disjoint()

    def check_disjoint(self) -> None:
        seen: dict[str, str] = {}
        for split, ids in self.ids.items():
            for item_id in ids:
                if item_id in seen:
                    raise PartitionOverlapError(
                        f"task {self.task!r}: item {item_id!r} is in both {seen[item_id]!r} and {split!r}"
                    )
                seen[item_id] = split

    def fingerprint(self, split: str) -> str:
        return hashlib.sha256("\n".join(self.ids[split]).encode()).hexdigest()[:16]

    def select(self, items: Sequence[MultipleChoiceItem], split: str, limit: int | None = None
               ) -> list[MultipleChoiceItem]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        by_id = {item.id: item for item in items}
        ids = self.ids[split][:limit] if limit is not None else self.ids[split]
        return [by_id[i] for i in ids]

    def summary(self) -> dict:
        return {
            "task": self.task, "seed": self.seed,
            "validation_fraction": self.validation_fraction, "test_fraction": self.test_fraction,
            "counts": {s: len(self.ids[s]) for s in SPLITS},
            "fingerprints": {s: self.fingerprint(s) for s in SPLITS},
        }


def partition(task: str, items: Sequence[MultipleChoiceItem], seed: int = 0,
              validation_fraction: float = 0.1, test_fraction: float = 0.3) -> Partition:
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        repeated = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise PartitionOverlapError(f"task {task!r}: item id {repeated!r} is not unique")
    ordered = sorted(ids, key=lambda i: _rank(task, seed, i))
    n_test = round(len(ordered) * test_fraction)
    n_val = round(len(ordered) * validation_fraction)
    return Partition(
        task=task, seed=seed, validation_fraction=validation_fraction, test_fraction=test_fraction,
        ids={
            "test": tuple(ordered[:n_test]),
            "validation": tuple(ordered[n_test:n_test + n_val]),
            "train": tuple(ordered[n_test + n_val:]),
        },
    )
