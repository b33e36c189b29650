"""No-meta-train LoRA: a LoRA from PEFT's standard init, trained only on the target's labelled support
examples (the setup's `support` examples, `steps` optimizer steps at `lr`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import BaselineRun, fine_tune, write_result


@dataclass
class NoMetaConfig:
    """No settings beyond the shared setup: its budget is the method."""


def run(job: BaselineRun, config: NoMetaConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    s = job.setup
    state, losses = fine_tune(job.lm, s.lora, job.support, s.steps, s.lr, s.batch_size, s.seed)
    return write_result(job, "no-meta", config, state, out, started, {"support_losses": losses})
