"""No-meta-train LoRA: a LoRA from PEFT's standard init, trained only on the target's labelled support
examples (the setup's `support` examples, `steps` optimizer steps at `lr`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .common import BaselineJob, finish_by_fine_tuning
from .settings import NoMetaConfig

NAME = "no-meta"
META_TRAINS = False
OUTPUT = "plain"
NEEDS_LIBRARY = False




def meta_train(job: BaselineJob, config: NoMetaConfig, progress: bool = True) -> dict[str, torch.Tensor]:
    return {}  # nothing is learned before the target is known


def finish(job: BaselineJob, config: NoMetaConfig, meta: dict[str, torch.Tensor], out: Path, started: float
           ) -> dict[str, Any]:
    return finish_by_fine_tuning(job, NAME, config, None, out, started)


CONFIG = NoMetaConfig
