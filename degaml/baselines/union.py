"""Union-train LoRA: one LoRA trained on the union of the meta-training tasks' labelled examples (tasks
sampled uniformly per batch), evaluated zero-shot on the held-out target, or (`finetune`) then fine-tuned
on the target's support examples with the same budget as every other method. The output records which."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import BaselineRun, fine_tune, write_result


@dataclass
class UnionConfig:
    steps: int = 60
    """Optimizer steps on the union (x setup.batch_size examples: the meta-training example budget)."""
    lr: float = 1e-3
    finetune: bool = False
    """Then fine-tune on the target's support examples (setup.steps at setup.lr)."""


def run(job: BaselineRun, config: UnionConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    s = job.setup
    # Balanced union: each task contributes the same number of examples, so no task dominates by size.
    per_task = min(len(v) for v in job.meta.values())
    union = [ex for examples in job.meta.values() for ex in examples[:per_task]]
    state, losses = fine_tune(job.lm, s.lora, union, config.steps, config.lr, s.batch_size, s.seed)
    record: dict[str, Any] = {"variant": "union + target fine-tune" if config.finetune else "union, zero-shot",
                              "union_examples": len(union), "union_losses": losses}
    if config.finetune:
        state, support_losses = fine_tune(job.lm, s.lora, job.support, s.steps, s.lr, s.batch_size, s.seed, init=state)
        record["support_losses"] = support_losses
    return write_result(job, "union", config, state, out, started, record)
