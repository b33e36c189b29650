"""Tasks as multiple-choice items, from offline packages, the hub or local files, and their partitions."""

from .example import DataFormatError, MultipleChoiceItem
from .files import read_task_file
from .splits import SPLITS, Partition, PartitionOverlapError, partition
from .tasks import META_TRAINING_TASKS, OUT_OF_DOMAIN_TASKS, TASKS, TaskSpec, get_task, load_task, task_label

__all__ = [
    "META_TRAINING_TASKS",
    "OUT_OF_DOMAIN_TASKS",
    "SPLITS",
    "TASKS",
    "DataFormatError",
    "MultipleChoiceItem",
    "Partition",
    "PartitionOverlapError",
    "TaskSpec",
    "get_task",
    "load_task",
    "partition",
    "read_task_file",
    "task_label",
]
