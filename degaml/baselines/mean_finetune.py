"""Mean adapter + fine-tune: the control that isolates what the generator adds. One LoRA per meta-training
task (its own labelled examples, `task_steps` steps each), averaged element-wise (A with A, B with B: the
adapter a collapsed generator produces), then fine-tuned on the target's support examples with the same
budget as every other method. Without the target fine-tune it is the zero-label mean adapter. Its
meta-training, the per-task LoRAs (`META_FROM`), is labelled LoraHub's library too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models import weighted_adapter_sum
from ..sft import fine_tune
from .common import BaselineJob, finish_by_fine_tuning, stack_library, unstack_library
from .settings import MeanFinetuneConfig

NAME = "mean-finetune"
META_TRAINS = True
OUTPUT = "plain"
NEEDS_LIBRARY = False
META_FROM = "task-loras"
"""Its meta-training is a library of per-task LoRAs, shared with `lorahub` when their settings agree."""




def meta_train(job: BaselineJob, config: MeanFinetuneConfig, progress: bool = True) -> dict[str, torch.Tensor]:
    """One LoRA per meta-training task, stacked (`common.unstack_library` reads them back)."""
    s = job.setup
    return stack_library({task: fine_tune(job.lm, s.lora, examples, config.task_steps, config.lr, s.batch_size,
                                          s.seed)[0] for task, examples in job.meta.items()})


def finish(job: BaselineJob, config: MeanFinetuneConfig, meta: dict[str, torch.Tensor], out: Path, started: float
           ) -> dict[str, Any]:
    states = list(unstack_library(meta).values())
    mean = weighted_adapter_sum(states, [1 / len(states)] * len(states))
    return finish_by_fine_tuning(job, NAME, config, mean, out, started,
                                 {"variant": "mean of per-task adapters + target fine-tune"})


CONFIG = MeanFinetuneConfig
