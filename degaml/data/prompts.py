"""A task's unlabelled prompts from one partition, in the partition's seeded order (answers never read)."""

from __future__ import annotations

from typing import Literal

from .splits import partition
from .tasks import load_task, task_label


def task_prompts(task_source: str, split: Literal["train", "validation", "test"], seed: int = 0,
                 validation_fraction: float = 0.1, test_fraction: float = 0.3, source: str = "offline") -> list[str]:
    items = load_task(task_source, source)  # type: ignore[arg-type]
    part = partition(task_label(task_source), items, seed, validation_fraction, test_fraction)
    return [item.prompt for item in part.select(items, split)]
