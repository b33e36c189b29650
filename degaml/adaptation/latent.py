"""The family `latent`, latent-space adaptation (SLOT): one vector delta added to the final hidden state,
right before the LM head, optimized for a few AdamW steps while every weight stays frozen.

- shared per task (as the reference does): one delta from all of the task's unlabelled prompts;
- per sample (as the SLOT paper does): a fresh delta per item, optimized on that item's own context.

Before a linear LM head a task-scope delta is a constant bias on every token's logit: a token prior. Its
objective (`objective`) decides what that prior is for: `prompt_lm`, the prompts' next-token loss (the
reference; it makes the question text likelier, not one option over another), or `infomax` (task scope),
confident option distributions per unlabelled item whose average stays spread over the option positions,
i.e. a label-free calibration of the options' tokens.

`calibrate` fits nothing: it calibrates the options' scores themselves at scoring time, without labels (batch
calibration for a fixed label set such as yes / no, domain-conditional PMI for free-text options;
`degaml/evaluation/calibration.py`), on top of the generated adapter. Where `infomax` learns one token prior,
it removes the prior each option carries whatever the input.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..choice import choice_example, collate_choices, infomax_loss, option_distribution
from ..data import MultipleChoiceItem
from ..evaluation.harness import ScoreFn
from ..evaluation.loglikelihood import ChoiceScore, LoglikelihoodScorer
from ..models import LoadedModel, latent_delta, peft_model
from .base import (
    AdaptationContext,
    AdaptationResult,
    BudgetError,
    check_choice,
    check_range,
    outcome,
    write_refined,
)
from .ttt import prompt_batch

NAME = "latent"


@dataclass
class LatentConfig:
    steps: int = 5
    lr: float = 0.1
    max_tokens: int = 256
    scope: str = "task"
    """`task`: one delta fitted on all the task's prompts; `sample`: a fresh delta per evaluated item."""
    objective: str = "prompt_lm"
    """prompt_lm | infomax | calibrate (task scope only for the last two: they need several items); the module's
    docstring."""

    def __post_init__(self) -> None:
        check_range("latent.steps", self.steps, 0, 1000, integer=True)
        check_range("latent.lr", self.lr, 0, 10, open_low=True)
        check_range("latent.max_tokens", self.max_tokens, 1, 1_000_000, integer=True)
        check_choice("latent.scope", self.scope, ("task", "sample"))
        check_choice("latent.objective", self.objective, ("prompt_lm", "infomax", "calibrate"))
        if self.objective in ("infomax", "calibrate") and self.scope != "task":
            raise BudgetError(f"latent.objective = {self.objective!r} needs scope task (its average is over items)")


GRID: list[tuple[dict[str, Any], float]] = [({"steps": 5, "lr": 0.1, "scope": "task"}, 15.0),
                                             ({"steps": 3, "lr": 0.1, "scope": "sample"}, 30.0),
                                             ({"steps": 10, "lr": 0.1, "objective": "infomax"}, 30.0),
                                             ({"objective": "calibrate", "steps": 0}, 2.0)]

CONFIG = LatentConfig


def OUTPUT(config: LatentConfig) -> str:  # noqa: N802 (a capability of the plug-in convention)
    return "calibrated" if config.objective == "calibrate" else f"latent-{config.scope}"


NEEDS_LIBRARY = False


def optimize_delta(lm: LoadedModel, prompts: Sequence[str], config: LatentConfig,
                   items: Sequence[MultipleChoiceItem] = ()) -> tuple[torch.Tensor, list[float], float]:
    """(delta, per-step loss, seconds): on `prompts` (`prompt_lm`) or on `items`, the same prompts with their
    options and no answers (`infomax`). Only delta receives gradients; the model's weights are untouched."""
    infomax = config.objective == "infomax"
    if not (items if infomax else prompts):
        raise BudgetError(f"latent adaptation ({config.objective}) needs at least one "
                          f"{'unlabelled item with its options' if infomax else 'prompt'}")
    start = time.perf_counter()
    hidden = lm.model.get_output_embeddings().in_features
    delta = torch.zeros(hidden, device=lm.device, requires_grad=True)
    optimizer = torch.optim.AdamW([delta], lr=config.lr)
    if infomax:
        batch = collate_choices(lm, [choice_example(lm, item, config.max_tokens) for item in items])

        def objective() -> torch.Tensor:
            return infomax_loss(option_distribution(lm.model, batch))
    else:
        batch = prompt_batch(lm, list(prompts), config.max_tokens)

        def objective() -> torch.Tensor:
            return lm.model(**batch).loss
    requires = [p.requires_grad for p in lm.model.parameters()]
    for p in lm.model.parameters():
        p.requires_grad_(False)
    trace: list[float] = []
    try:
        with latent_delta(lm, delta):
            for _ in range(config.steps):
                loss = objective()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite latent loss at step {len(trace) + 1}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                trace.append(loss.item())
    finally:
        for p, r in zip(lm.model.parameters(), requires):
            p.requires_grad_(r)
    return delta.detach(), trace, time.perf_counter() - start


def per_sample_scorer(lm: LoadedModel, settings: dict, batch_size: int, fallbacks: list[str] | None = None,
                      max_length: int | None = None) -> ScoreFn:
    """SLOT per sample, as `evaluate_adapted`'s item scorer: a fresh delta fitted on each item's own context,
    then that item scored with it, within `max_length` tokens per option (None: the model's window). An item
    whose latent loss turns non-finite is scored without a delta; its id goes to `fallbacks`. `settings`:
    steps, lr, max_tokens (an adapted output's SLOT settings)."""
    config = LatentConfig(**settings)
    scorer = LoglikelihoodScorer(lm, batch_size=batch_size, max_length=max_length)

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


def apply(ctx: AdaptationContext, config: LatentConfig, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Task scope: fit one delta on top of the generated adapter and save it beside the adapter. Sample scope:
    save the settings; evaluation fits a delta per item (`per_sample_scorer`). Calibrate: save the generated
    adapter with the setting; evaluation calibrates its scores."""
    started = time.perf_counter()
    state, generated = ctx.generate(ctx.seed)
    delta, result = None, AdaptationResult(NAME, state, asdict(config), 0.0)
    if config.scope == "task" and config.objective != "calibrate":
        with peft_model(ctx.lm, ctx.lora, state) as model:
            model.eval()
            try:
                delta, trace, seconds = optimize_delta(ctx.lm, ctx.prompts, config, ctx.items)
                delta = delta.float().cpu()
                result = AdaptationResult(NAME, state, asdict(config), seconds, trace=trace)
            except FloatingPointError as e:  # non-finite loss: keep the generated adapter alone
                result = AdaptationResult(NAME, state, asdict(config), 0.0, fell_back=True, reason=str(e))
    record = {**generated.to_info(), **info, **outcome(result, started), "latent": asdict(config)}
    return write_refined(ctx, out, state, record, latent_delta=delta)
