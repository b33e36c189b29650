"""Union LoRA + fine-tune: union LoRA (the same meta-training as `union`) fine-tuned on the target's
support examples with the same budget as every other k-label method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import union
from .common import BaselineJob, finish_by_fine_tuning
from .settings import UnionFinetuneConfig

NAME = "union-finetune"
META_TRAINS = True
OUTPUT = "plain"
NEEDS_LIBRARY = False
META_FROM = union.NAME
"""Its meta-training is union's: a run trains it once for both when their settings agree."""




meta_train = union.meta_train


def finish(job: BaselineJob, config: UnionFinetuneConfig, meta: dict[str, torch.Tensor], out: Path, started: float
           ) -> dict[str, Any]:
    return finish_by_fine_tuning(job, NAME, config, meta, out, started, {"variant": "union + target fine-tune"})


CONFIG = UnionFinetuneConfig
