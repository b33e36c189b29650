"""Union-train LoRA: one LoRA trained on the union of the meta-training tasks' labelled examples (tasks
sampled uniformly per batch), evaluated zero-shot on the held-out target: no target label. Its fine-tuned
variant, for the k-label track, is `union-finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..sft import fine_tune
from .common import BaselineJob, write_result
from .settings import UnionConfig

NAME = "union"
META_TRAINS = True
OUTPUT = "plain"
NEEDS_LIBRARY = False




def meta_train(job: BaselineJob, config: UnionConfig, progress: bool = True,
               init: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The union LoRA (PEFT keys), from PEFT's init or continuing from `init`. Balanced: each task
    contributes the same number of examples."""
    s = job.setup
    per_task = min(len(v) for v in job.meta.values())
    union = [ex for examples in job.meta.values() for ex in examples[:per_task]]
    state, _ = fine_tune(job.lm, s.lora, union, config.steps, config.lr, s.batch_size, s.seed, init=init)
    return state


def finish(job: BaselineJob, config: UnionConfig, meta: dict[str, torch.Tensor], out: Path, started: float
           ) -> dict[str, Any]:
    return write_result(job, NAME, config, meta, out, started, {"variant": "union, zero-shot",
                                                                  "support_examples": 0})


CONFIG = UnionConfig
