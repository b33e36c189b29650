"""Evaluate whatever an adaptation family wrote: a PEFT adapter, an adapter with a task-level latent delta,
an adapter with per-sample SLOT settings, or a test-time scaling ensemble. The model is left as it was
found, so one loaded model can score many adapted directories in turn."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..adaptation.latent import LATENT_FILE, SlotConfig, latent_delta, optimize_delta
from ..adaptation.tts import TTS_FILE
from ..config import DataConfig, EvalConfig
from ..data import MultipleChoiceItem
from ..data.prompts import load_partitioned
from ..data.splits import Partition
from ..models import LoadedModel, load_adapter
from .harness import ScoreFn, TaskResult, ensemble_results, evaluate_tasks
from .loglikelihood import ChoiceScore, LoglikelihoodScorer

Loaded = dict[str, tuple[list[MultipleChoiceItem], Partition]]


def adapter_kind(adapter: Path | None) -> str:
    """plain, latent-task, latent-sample or tts."""
    if adapter is None:
        return "plain"
    if (adapter / TTS_FILE).is_file():
        return "tts"
    if (adapter / LATENT_FILE).is_file():
        return "latent-task"
    info = adapter / "degaml.json"
    if info.is_file() and json.loads(info.read_text()).get("latent", {}).get("scope") == "sample":
        return "latent-sample"
    return "plain"


@contextmanager
def applied_adapter(lm: LoadedModel, adapter: Path) -> Iterator[None]:
    """`lm.model` carries the adapter inside the block and is the bare base model again after it."""
    base = lm.model
    lm.model = load_adapter(base, adapter).eval()
    try:
        yield
    finally:
        lm.model = lm.model.unload()
        lm.model.eval()


def per_sample_latent_scorer(lm: LoadedModel, config: SlotConfig, batch_size: int,
                             fallbacks: list[str] | None = None) -> ScoreFn:
    """SLOT per sample: a fresh delta fitted on each item's own context, then that item scored with it.
    An item whose latent loss turns non-finite is scored without a delta; its id goes to `fallbacks`."""
    scorer = LoglikelihoodScorer(lm, batch_size=batch_size)

    def score(items: Sequence[MultipleChoiceItem], progress: bool, desc: str) -> list[list[ChoiceScore]]:
        scores = []
        for item in tqdm(items, desc=f"{desc} (per-sample latent)", disable=not progress, leave=False):
            try:
                delta, _, _ = optimize_delta(lm, [item.prompt], config)
            except FloatingPointError:
                if fallbacks is not None:
                    fallbacks.append(item.id)
                scores.extend(scorer.score([item], progress=False))
                continue
            with latent_delta(lm, delta):
                scores.extend(scorer.score([item], progress=False))
        return scores

    return score


def evaluate_adapted(lm: LoadedModel, adapter: Path | None, data: DataConfig, config: EvalConfig,
                     progress: bool = True, loaded: Loaded | None = None
                     ) -> tuple[list[TaskResult], dict[str, Partition]]:
    """Score `adapter` (any kind, or None for the base model) on `data`'s tasks and split."""
    kind = adapter_kind(adapter)
    loaded = loaded or load_partitioned(data)
    if kind == "plain" and adapter is None:
        return evaluate_tasks(lm, data, config, progress, loaded)
    assert adapter is not None
    if kind == "tts":
        if config.protocol != "loglikelihood":
            raise ValueError(f"{adapter} is a test-time scaling ensemble: score it with --protocol loglikelihood")
        spec = json.loads((adapter / TTS_FILE).read_text())
        member_results = []
        for member in spec["members"]:
            with applied_adapter(lm, adapter / member):
                member_result, partitions = evaluate_tasks(lm, data, config, progress, loaded)
            member_results.append(member_result)
        selected = {t: part.select(items, data.split, data.limit) for t, (items, part) in loaded.items()}
        return ensemble_results(member_results, selected, spec["combine"]), partitions
    with applied_adapter(lm, adapter):
        if kind == "latent-sample":
            settings = json.loads((adapter / "degaml.json").read_text())["latent"]
            slot = SlotConfig(steps=settings["steps"], lr=settings["lr"], max_tokens=settings["max_tokens"])
            fallbacks: list[str] = []
            results, partitions = evaluate_tasks(lm, data, config, progress, loaded,
                                                 scorer=per_sample_latent_scorer(lm, slot, config.batch_size, fallbacks))
            for result in results:  # recorded: items scored without their delta (non-finite latent loss)
                result.metrics["latent_fallbacks"] = float(sum(p["id"] in set(fallbacks) for p in result.predictions))
            return results, partitions
        delta = nullcontext() if kind == "plain" else latent_delta(
            lm, load_file(str(adapter / LATENT_FILE))["delta"].to(lm.device))
        with delta:
            return evaluate_tasks(lm, data, config, progress, loaded)
