"""One entry point for every family: an `Action` (family + hyper-parameters) applied to a task's generated
adapter and unlabelled prompts, written as a directory that `degaml evaluate --adapter` scores.

What each family writes:
- none, ttt, mixing: a PEFT adapter directory;
- latent, scope task: the adapter plus `latent_delta.safetensors` (one delta for the whole task);
- latent, scope sample: the adapter plus the SLOT settings in degaml.json; the evaluation optimizes a
  fresh delta on each item's own context before scoring it;
- tts: `tts.json` and K member adapters generated from K prompt samples.
Every directory has degaml.json: the action, the generation info, seconds, and whether the family fell back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import LoraSettings
from ..models import LoadedModel, LoraState, peft_model, write_adapter, write_ensemble
from .latent import SlotConfig, optimize_delta
from .mixing import LoraHubConfig, lorahub_search, prompt_loss_objective, rank_half_mix
from .policy import Action
from .ttt import TTTConfig, apply_ttt

LORAHUB_PROMPTS = 8
"""Unlabelled prompts in LoraHub's search objective (each evaluation is one forward pass over them)."""


@dataclass
class AdaptationContext:
    lm: LoadedModel
    """The base model, with no adapter attached; families attach and remove their own."""
    lora: LoraSettings
    base_model: str
    generate: Callable[[int], tuple[LoraState, dict]]
    """Prompt-sample seed -> (generated LoRA state, generation info). Only ever run forward."""
    prompts: Sequence[str]
    """The task's unlabelled adaptation prompts."""
    library: Sequence[LoraState] = field(default_factory=list)
    """Adapters LoraHub may mix with the generated one (never the target task's own)."""
    seed: int = 0


def latent_settings(action: Action) -> SlotConfig:
    return SlotConfig(steps=action.get("steps", 5), lr=action.get("lr", 0.1))


def apply_action(action: Action, ctx: AdaptationContext, out: Path) -> dict[str, Any]:
    """Apply `action` and write its result to `out` (atomically). Returns what degaml.json records."""
    start = time.perf_counter()
    if action.family == "tts":
        return _write_ensemble(action, ctx, out, start)
    state, info = ctx.generate(ctx.seed)
    adapt_start = time.perf_counter()
    record: dict[str, Any] = {"fell_back": False, "reason": "", "trace": []}
    delta = None
    if action.family == "ttt":
        result = apply_ttt(ctx.lm, state, ctx.lora, ctx.prompts,
                           TTTConfig(steps=action.get("steps", 5), lr=action.get("lr", 1e-5), seed=ctx.seed))
        state, record = result.state, {"fell_back": result.fell_back, "reason": result.reason, "trace": result.trace}
    elif action.family == "mixing" and action.get("variant", "rank_half") == "rank_half":
        state = rank_half_mix(state, action.get("lam", 0.5))
    elif action.family == "mixing":
        objective, close = prompt_loss_objective(ctx.lm, ctx.lora, ctx.prompts[:LORAHUB_PROMPTS])
        try:
            config = LoraHubConfig(max_evaluations=action.get("evaluations", 40), l1=action.get("l1", 0.05))
            result = lorahub_search([state, *ctx.library], objective, config)
        finally:
            close()
        state = result.state
        record = {"fell_back": result.fell_back, "reason": result.reason, "trace": result.trace,
                  "weights": result.hyperparameters["weights"], "library_size": len(ctx.library)}
    elif action.family == "latent" and action.get("scope", "task") == "task":
        delta, record = _task_delta(action, ctx, state)
    info.update(action=action.to_dict(), adaptation_seconds=time.perf_counter() - adapt_start,
                seconds=time.perf_counter() - start, **record)
    if action.family == "latent":
        info["latent"] = {"scope": action.get("scope", "task"), **vars(latent_settings(action))}
    write_adapter(state, ctx.lora, ctx.base_model, out, info, latent_delta=delta)
    return info


def _task_delta(action: Action, ctx: AdaptationContext, state: LoraState) -> tuple[Any, dict[str, Any]]:
    """SLOT shared by the task: one delta fitted on all prompts, on top of the generated adapter."""
    with peft_model(ctx.lm, ctx.lora, state) as model:
        model.eval()
        try:
            delta, trace, _ = optimize_delta(ctx.lm, ctx.prompts, latent_settings(action))
        except FloatingPointError as e:  # non-finite loss: keep the generated adapter alone
            return None, {"fell_back": True, "reason": str(e), "trace": []}
    return delta.float().cpu(), {"fell_back": False, "reason": "", "trace": trace}


def _write_ensemble(action: Action, ctx: AdaptationContext, out: Path, start: float) -> dict[str, Any]:
    k, method = action.get("k", 3), action.get("combine", "vote")
    members = [ctx.generate(ctx.seed + i) for i in range(k)]  # a different prompt sample per member
    info = {"action": action.to_dict(), "seeds": list(range(ctx.seed, ctx.seed + k)),
            "seconds": time.perf_counter() - start, "fell_back": False, "reason": ""}
    return write_ensemble(members, ctx.lora, ctx.base_model, out, method, info)
