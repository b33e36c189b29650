"""A task's items by partition: every task with its seeded partition, one partition's items, and its unlabelled
prompts (answers never read), in the partition's seeded order."""

from __future__ import annotations

import string
from typing import Literal

from ..config import DataConfig
from .example import MultipleChoiceItem
from .splits import Partition, partition
from .tasks import load_task, task_label

PromptFormat = Literal["question", "with_options"]
PROMPT_FORMATS = ("question", "with_options")


def format_prompt(item: MultipleChoiceItem, prompt_format: PromptFormat = "question") -> str:
    """The prompt a model sees, alone (`question`) or followed by its options as "A: ...", "B: ..." lines
    (`with_options`: what a task looks like, not only what it asks; the gold answer is never marked)."""
    if prompt_format == "question":
        return item.prompt
    if prompt_format != "with_options":
        raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    letters = string.ascii_uppercase
    options = "\n".join(f"{letters[i] if i < len(letters) else i}: {c}" for i, c in enumerate(item.choices))
    return f"{item.prompt}\n{options}"


def task_items(task_source: str, split: Literal["train", "validation", "test"], seed: int = 0,
               validation_fraction: float = 0.1, test_fraction: float = 0.3, source: str = "offline"
               ) -> list[MultipleChoiceItem]:
    """One partition of a task's items, in the partition's seeded order."""
    items = load_task(task_source, source)  # type: ignore[arg-type]
    part = partition(task_label(task_source), items, seed, validation_fraction, test_fraction)
    return part.select(items, split)


def task_prompts(task_source: str, split: Literal["train", "validation", "test"], seed: int = 0,
                 validation_fraction: float = 0.1, test_fraction: float = 0.3, source: str = "offline",
                 prompt_format: PromptFormat = "question") -> list[str]:
    return [format_prompt(item, prompt_format)
            for item in task_items(task_source, split, seed, validation_fraction, test_fraction, source)]


def load_partitioned(data: DataConfig) -> dict[str, tuple[list[MultipleChoiceItem], Partition]]:
    """Each task's items and its seeded partition (computed over all labelled items of the task)."""
    loaded = {}
    for name in data.tasks:
        items = load_task(name, data.source)
        loaded[task_label(name)] = (items, partition(task_label(name), items, data.partition_seed,
                                                     data.validation_fraction, data.test_fraction))
    return loaded
