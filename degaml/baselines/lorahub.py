"""Labelled LoraHub (Huang et al. 2023): a weighted sum of per-task LoRAs, A = sum_k w_k A_k and
B = sum_k w_k B_k, the weights searched gradient-free (bounded Powell, `evaluations` evaluations of the
objective) to minimise the causal-LM loss of the target's labelled support examples (answers only) plus an
L1 penalty. No gradient step touches the adapters. The library is mean-finetune's meta-training (one LoRA per
meta-training task); the search starts at equal weights, the mean adapter. The label-free variant that scores
unlabelled prompts instead is the adaptation family `mixing variant=prompt_perplexity`; both search with
`models.mixture.search_mixture`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict

from ..models import peft_model
from ..models.mixture import search_mixture
from ..sft import collate
from . import mean_finetune
from .common import BaselineJob, unstack_library, write_result
from .settings import LoraHubBaselineConfig

NAME = "lorahub"
META_TRAINS = True
OUTPUT = "plain"
NEEDS_LIBRARY = False
META_FROM = mean_finetune.META_FROM
META_CONFIG = mean_finetune.CONFIG
"""Only these settings determine its meta-training, so it shares mean-finetune's when they agree."""




meta_train = mean_finetune.meta_train


def finish(job: BaselineJob, config: LoraHubBaselineConfig, meta: dict[str, torch.Tensor], out: Path,
           started: float) -> dict[str, Any]:
    library = unstack_library(meta)
    batch = {k: v.to(job.lm.device) for k, v in collate(job.support, job.lm.tokenizer.pad_token_id).items()}
    with peft_model(job.lm, job.setup.lora) as model:
        model.eval()

        def support_loss(state: dict[str, torch.Tensor]) -> float:
            set_peft_model_state_dict(model, state)
            with torch.no_grad():
                return float(model(**batch).loss)

        found = search_mixture(list(library.values()), support_loss, config.evaluations, config.l1,
                               initial=[1 / len(library)] * len(library))
    return write_result(job, NAME, config, found.state, out, started,
                        {"variant": "labelled LoraHub (support loss)", "weights": dict(zip(library, found.weights)),
                         "objective_trace": found.trace})


CONFIG = LoraHubBaselineConfig
