"""A task's items by partition: every task with its seeded partition, one partition's items, and its unlabelled
prompts (answers never read), in the partition's seeded order."""

from __future__ import annotations

import string
from typing import Literal

from ..config import DataConfig, PartitionConfig
from .example import MultipleChoiceItem
from .splits import Partition, partition
from .tasks import load_task, task_label

DEFAULT_PARTITION = PartitionConfig()
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


def task_items(task_source: str, split: Literal["train", "validation", "test"],
               spec: PartitionConfig = DEFAULT_PARTITION) -> list[MultipleChoiceItem]:
    """One partition of a task's items, in the partition's seeded order."""
    items, part = partitioned(task_source, spec)
    return part.select(items, split)


def task_prompts(task_source: str, split: Literal["train", "validation", "test"],
                 spec: PartitionConfig = DEFAULT_PARTITION, prompt_format: PromptFormat = "question") -> list[str]:
    return [format_prompt(item, prompt_format) for item in task_items(task_source, split, spec)]


def partitioned(task_source: str, spec: PartitionConfig = DEFAULT_PARTITION
                ) -> tuple[list[MultipleChoiceItem], Partition]:
    """A task's items and its seeded partition (computed over all labelled items of the task)."""
    items = load_task(task_source, spec.source)
    return items, partition(task_label(task_source), items, spec.seed, spec.validation_fraction, spec.test_fraction)


def load_partitioned(data: DataConfig) -> dict[str, tuple[list[MultipleChoiceItem], Partition]]:
    """Each of `data.tasks`' items and its seeded partition."""
    return {task_label(name): partitioned(name, data.partition) for name in data.tasks}
