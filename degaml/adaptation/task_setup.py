"""Everything the adaptation module knows about a task at test time, without labels: its unlabelled
prompts, the generated adapter (as a function of the prompt-sample seed), the LoraHub library, and the
policy's state features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..data import MultipleChoiceItem
from ..data.prompts import format_prompt
from ..generator.generation import Generator
from ..generator.trajectories import checkpoint_paths, load_checkpoint
from ..models import LoadedModel, LoraState
from .actions import Action
from .apply import apply_action
from .base import AdaptationContext, Refinement, blind
from .policy import LinearPolicy, StateFeatures, adapter_statistics, confidence_and_entropy
from .ttt import prompt_batch

FEATURE_PROMPTS = 16
"""Prompts in the base model's confidence / entropy estimate (one forward pass)."""


def lorahub_library(generator: Generator, exclude: str) -> list[LoraState]:
    """The last checkpoint of each of the generator's training tasks' trajectories, except `exclude`
    (the target task: mixing in its own fine-tuned adapter would leak its labels)."""
    root = Path(generator.record.trajectories)
    library = []
    for task in generator.record.train_tasks:
        if task == exclude:
            continue
        paths = checkpoint_paths(root / task) if (root / task / "checkpoints").is_dir() else []
        if not paths:
            raise FileNotFoundError(f"LoraHub needs the trajectories the generator was trained on: "
                                    f"{root / task} has no checkpoints")
        library.append(load_checkpoint(paths[-1]))
    return library


def uses_library(action: Action | None) -> bool:
    """Whether adapting needs the training tasks' adapters loaded: a policy (`action` None) may choose
    prompt-perplexity mixing; a fixed action needs them only if it is that mixing."""
    return action is None or action.needs_library


def adaptation_context(generator: Generator, lm: LoadedModel, task: str, items: Sequence[MultipleChoiceItem],
                       seed: int = 0, with_library: bool = True) -> AdaptationContext:
    """`items`: the task's unlabelled items (answers never read). The generator sees them in its own prompt
    format; the families (TTT, SLOT, the policy's features) see the bare prompts the model is scored on."""
    ctx = context_from_prompts(generator, lm, task, [item.prompt for item in items],
                               [format_prompt(item, generator.prompt_format) for item in items], seed, with_library)
    return replace(ctx, items=[blind(item) for item in items])


def context_from_prompts(generator: Generator, lm: LoadedModel, task: str, prompts: Sequence[str],
                         generator_prompts: Sequence[str], seed: int = 0, with_library: bool = True
                         ) -> AdaptationContext:
    """The context from prompt strings: `prompts` as the model is scored on them, `generator_prompts` in the
    generator's format (the same strings when the caller has no options to append). `task` is kept out of
    the LoraHub library ("" when the prompts are not a registered task)."""
    from ..models import LoraGeometry

    target = LoraGeometry.from_model(lm.model, generator.lora)
    generator_prompts = list(generator_prompts)

    def generate(sample_seed: int, indices: Sequence[int] | None = None) -> tuple[LoraState, dict]:
        chosen = generator_prompts if indices is None else [generator_prompts[i] for i in indices]
        return generator.generate_state(chosen, sample_seed, target)

    library = lorahub_library(generator, task) if with_library else []
    return AdaptationContext(lm=lm, lora=generator.lora, base_model=generator.record.model, generate=generate,
                             prompts=list(prompts), library=library, seed=seed)


@torch.no_grad()
def task_features(generator: Generator, ctx: AdaptationContext) -> StateFeatures:
    """Label-free state: mean prompt embedding, generated-adapter norms, base model confidence / entropy, and
    how the generated adapter ranks the unlabelled items' options (`choice_features`)."""
    hidden = generator.encoder.encode(list(ctx.prompts[:generator.num_prompts]))  # (N, T, D), zero-padded
    real = hidden.abs().sum(-1) > 0
    embedding = (hidden * real[..., None]).sum((0, 1)) / real.sum().clamp(min=1)
    state, _ = ctx.generate(ctx.seed)
    batch = prompt_batch(ctx.lm, list(ctx.prompts[:FEATURE_PROMPTS]), max_tokens=256)
    logits = ctx.lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    confidence, entropy = confidence_and_entropy(logits, batch["attention_mask"])
    return StateFeatures(embedding.float().cpu(), adapter_statistics(state), confidence, entropy,
                         choice=choice_features(ctx, state))


CHOICE_FEATURES = 4


@torch.no_grad()
def choice_features(ctx: AdaptationContext, state: LoraState) -> list[float]:
    """What decides whether a choice-level family can help, read from the generated adapter's option
    probabilities over (up to `FEATURE_PROMPTS`) unlabelled items: their mean maximum (confidence), the entropy
    of their average over option positions over its maximum (1: no answer prior; low: one position or label
    favoured, which calibration removes), the share of items offering the first item's options (1 for a fixed
    label set such as yes / no: batch calibration applies), and the log of the mean number of options. Zeros
    without items."""
    import math

    from ..evaluation import LoglikelihoodScorer
    from ..models import peft_model

    items = list(ctx.items[:FEATURE_PROMPTS])
    if not items:
        return [0.0] * CHOICE_FEATURES
    with peft_model(ctx.lm, ctx.lora, state):
        rows = LoglikelihoodScorer(ctx.lm).score(items, progress=False)
    width = max(len(row) for row in rows)
    marginal, top = torch.zeros(width), []
    for row in rows:
        probs = torch.softmax(torch.tensor([s.logprob for s in row], dtype=torch.float64), 0)
        marginal[:len(row)] += probs.float() / len(rows)
        top.append(float(probs.max()))
    balance = float(-(marginal * marginal.clamp(min=1e-12).log()).sum()) / math.log(width) if width > 1 else 1.0
    shared = sum(item.choices == items[0].choices for item in items) / len(items)
    return [sum(top) / len(top), balance, shared, math.log(sum(len(row) for row in rows) / len(rows))]


@dataclass
class AdaptedTask:
    """What `adapt_task` wrote; path-like, so it can be handed to anything that takes the output directory."""

    path: Path
    action: Action
    info: dict[str, Any]
    """The adapted output's record (degaml.json / tts.json)."""
    scores: dict[str, float] | None = None
    """The policy's probability per action label, when a policy chose."""

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def refinement(self) -> Refinement:
        return Refinement.from_info(self.info, str(self.path))


def adapt_task(generator: Generator, ctx: AdaptationContext, out: Path, action: Action | None = None,
               policy: LinearPolicy | None = None) -> AdaptedTask:
    """Generate the task's adapter and refine it with `action`, or with the action `policy` chooses from the
    task's label-free features; write the adapted output to `out`. The one path from a task to an adapted
    output, for the CLI, the experiment and the benchmarks."""
    if (action is None) == (policy is None):
        raise ValueError("give exactly one of action and policy")
    scores = None
    if policy is not None:
        state = task_features(generator, ctx).vector()
        scores, action = policy.scores(state), policy.choose(state)
    assert action is not None
    return AdaptedTask(Path(out), action, apply_action(action, ctx, Path(out)), scores)
