"""Evaluate whatever an adaptation family or a baseline wrote (`degaml.models.adapted_output` owns the format): a
PEFT adapter, an adapter with a task-level latent delta, an adapter with per-sample SLOT settings, an adapter
whose scores are calibrated without labels, or an ensemble. The model is left as it was found, so one loaded model can score many outputs in turn.

Per-sample SLOT fits a delta to each item before scoring it: that is adaptation's work, so the caller
hands it in as `item_scorer` (`degaml.adaptation.latent.per_sample_scorer`); evaluation imports nothing
above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from ..config import DataConfig, EvalConfig
from ..data import MultipleChoiceItem
from ..data.prompts import load_partitioned
from ..data.splits import Partition
from ..models import AdaptedOutput, LoadedModel, latent_delta, load_adapter
from ..models.lora import kept_requires_grad
from .calibration import calibrate
from .ensemble import ensemble_results
from .harness import ScoreFn, TaskResult, evaluate_tasks

Loaded = dict[str, tuple[list[MultipleChoiceItem], Partition]]
ItemScorer = Callable[[LoadedModel, dict, int, list[str], "int | None"], ScoreFn]
"""(model with the adapter applied, SLOT settings, batch size, fallback ids to append to, the per-option
window `EvalConfig.max_length`) -> scorer."""


@contextmanager
def applied_adapter(lm: LoadedModel, adapter: Path) -> Iterator[None]:
    """Inside the block `lm.model` has the adapter merged into its weights, so scoring costs what the bare
    model's does (benchmarks/merged_scoring.py measures the saving); after it, the bare base model again, bit
    for bit: the merged layers get their saved weights back rather than a subtraction's rounding, and its
    parameters' `requires_grad` as before (`kept_requires_grad`)."""
    with kept_requires_grad(lm.model):
        peft = load_adapter(lm.model, adapter).eval()
        saved = [(layer.get_base_layer().weight, layer.get_base_layer().weight.detach().clone())
                 for layer in peft.modules() if isinstance(layer, LoraLayer)]
        lm.model = peft
        try:
            lm.model = peft.merge_and_unload()
            yield
        finally:  # whatever happened, even a merge that failed half-way
            with torch.no_grad():
                for weight, original in saved:
                    weight.copy_(original)
            if isinstance(lm.model, PeftModel):
                lm.model = lm.model.unload()
            lm.model.eval()


def evaluate_adapted(lm: LoadedModel, adapter: Path | None, data: DataConfig, config: EvalConfig,
                     progress: bool = True, loaded: Loaded | None = None, item_scorer: ItemScorer | None = None
                     ) -> tuple[list[TaskResult], dict[str, Partition]]:
    """Score `adapter` (any adapted output, or None for the base model) on `data`'s tasks and split."""
    loaded = loaded or load_partitioned(data)
    if adapter is None:
        return evaluate_tasks(lm, data, config, progress, loaded)
    output = AdaptedOutput.load(adapter)
    if output.kind == "calibrated" and config.protocol != "loglikelihood":
        raise ValueError(f"{adapter} is a {output.kind} output: score it with --protocol loglikelihood")
    if output.kind == "tts":
        member_results = []
        for member in output.members:
            with applied_adapter(lm, member):
                member_result, partitions = evaluate_tasks(lm, data, config, progress, loaded)
            member_results.append(member_result)
        selected = {t: part.select(items, data.split, data.limit) for t, (items, part) in loaded.items()}
        return ensemble_results(member_results, selected, output.combine), partitions
    with applied_adapter(lm, adapter):
        if output.kind == "latent-sample":
            if item_scorer is None:
                raise ValueError(f"{adapter} adapts each item (per-sample SLOT): the caller must pass item_scorer")
            fallbacks: list[str] = []
            results, partitions = evaluate_tasks(
                lm, data, config, progress, loaded,
                scorer=item_scorer(lm, output.latent_settings, config.batch_size, fallbacks, config.max_length))
            for result in results:  # recorded: items scored without their delta (non-finite latent loss)
                result.metrics["latent_fallbacks"] = float(sum(p.id in set(fallbacks) for p in result.predictions))
            return results, partitions
        if output.kind == "calibrated":
            results, partitions = evaluate_tasks(lm, data, config, progress, loaded)
            calibrated = []
            for result in results:
                items, part = loaded[result.task]
                calibrated.append(calibrate(lm, result, part.select(items, data.split, data.limit), config.batch_size)[0])
            return calibrated, partitions
        delta = latent_delta(lm, output.latent_delta(lm.model.config.hidden_size).to(lm.device)) \
            if output.kind == "latent-task" else nullcontext()
        with delta:
            return evaluate_tasks(lm, data, config, progress, loaded)
