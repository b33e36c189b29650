"""The family `ttt`, test-time training: a few LoRA optimizer steps on the task's unlabelled prompts, with one
of three label-free objectives (`objective`):

- `prompt_lm`: the prompts' causal-LM loss (their own perplexity). It lowers the loss of the question text,
  which moves every option together: it rarely changes a prediction.
- `pseudo_label`: self-training. The generated adapter answers every unlabelled item (its options scored as
  accuracy reads them, `degaml/choice.py`); the confident answers (`confidence`), at most a fair share per
  option position (`balance`, so that an answer prior is not what is learned), become labels for the
  choice loss.
- `infomax`: confident option distributions per item whose average over the items stays spread over the
  option positions (entropy minus marginal entropy), as in information-maximizing test-time adaptation.

Padding is masked and steps are optimizer steps."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..choice import (
    ChoiceExample,
    answer_logits,
    choice_batch,
    choice_example,
    choice_loss,
    collate_choices,
    infomax_loss,
    option_distribution,
)
from ..config import LoraSettings
from ..data import MultipleChoiceItem
from ..models import LoadedModel, LoraState, lora_state, peft_model
from ..sft import recomputed_activations, train_lora
from .base import (
    AdaptationContext,
    AdaptationResult,
    BudgetError,
    check_choice,
    check_range,
    outcome,
    write_refined,
)

NAME = "ttt"


@dataclass
class TttConfig:
    steps: int = 5
    lr: float = 1e-5
    batch_size: int = 4
    max_tokens: int = 256
    objective: str = "prompt_lm"
    """prompt_lm | pseudo_label | infomax (the module's docstring)."""
    confidence: float = 0.0
    """pseudo_label: keep the items whose answer has at least this probability over the item's options."""
    balance: bool = True
    """pseudo_label: no option position holds more than 1 / (options) of the kept items (the most confident)."""

    def __post_init__(self) -> None:
        check_range("ttt.steps", self.steps, 0, 1000, integer=True)
        check_range("ttt.lr", self.lr, 0, 1, open_low=True)
        check_range("ttt.batch_size", self.batch_size, 1, 4096, integer=True)
        check_range("ttt.max_tokens", self.max_tokens, 1, 1_000_000, integer=True)
        check_choice("ttt.objective", self.objective, ("prompt_lm", "pseudo_label", "infomax"))
        check_range("ttt.confidence", self.confidence, 0, 1)


GRID: list[tuple[dict[str, Any], float]] = [
    *(({"steps": 5, "lr": lr}, 15.0) for lr in (1e-5, 1e-4)),
    ({"objective": "pseudo_label", "steps": 10, "lr": 1e-4}, 40.0),
    ({"objective": "infomax", "steps": 10, "lr": 1e-4}, 40.0),
]
"""Costs are rough multiples of one forward pass over the adaptation prompts (an optimizer step counts 3)."""

CONFIG = TttConfig
OUTPUT = "plain"
NEEDS_LIBRARY = False


def prompt_batch(lm: LoadedModel, prompts: Sequence[str], max_tokens: int) -> dict[str, torch.Tensor]:
    encoded = [lm.encode(p)[-max_tokens:] for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, :len(e)], mask[i, :len(e)] = torch.tensor(e), 1
    labels = ids.masked_fill(mask == 0, -100)  # no loss on padding
    return {"input_ids": ids.to(lm.device), "attention_mask": mask.to(lm.device), "labels": labels.to(lm.device)}


def apply_ttt(lm: LoadedModel, state: LoraState, lora: LoraSettings, prompts: Sequence[str],
              config: TttConfig, seed: int = 0, items: Sequence[MultipleChoiceItem] = ()) -> AdaptationResult:
    """Refine `state` on `prompts` (`prompt_lm`) or on `items`, the same prompts with their options and no
    answers (the choice-level objectives). The base model is left as it was found (the LoRA layers are removed)."""
    choice = config.objective != "prompt_lm"
    if not (items if choice else prompts):
        raise BudgetError(f"test-time training ({config.objective}) needs at least one unlabelled "
                          f"{'item with its options' if choice else 'prompt'}")
    start = time.perf_counter()
    sampler = torch.Generator().manual_seed(seed)
    details: dict[str, Any] = {}

    def prompt_lm_batch() -> dict[str, torch.Tensor]:
        picks = torch.randint(len(prompts), (config.batch_size,), generator=sampler).tolist()
        return prompt_batch(lm, [prompts[i] for i in picks], config.max_tokens)

    with peft_model(lm, lora, state) as model:
        next_batch, loss_fn = prompt_lm_batch, None
        if choice:
            examples = [choice_example(lm, item, config.max_tokens) for item in items]
            if config.objective == "pseudo_label":
                examples, details = pseudo_labels(model, lm, examples, config)
                if not examples:
                    return AdaptationResult("ttt", state, asdict(config), time.perf_counter() - start, fell_back=True,
                                            reason=f"no item's answer reached confidence {config.confidence}",
                                            details=details)
            loss_fn = _pseudo_label_loss if config.objective == "pseudo_label" else _infomax_loss

            def next_batch() -> dict[str, torch.Tensor]:
                return choice_batch(lm, examples, config.batch_size, sampler)
        try:  # a choice batch holds every option of every item: its activations are recomputed, not kept
            with recomputed_activations(model) if choice else nullcontext():
                trace = train_lora(model, next_batch, config.steps, config.lr, loss_fn)
        except FloatingPointError as e:
            return AdaptationResult("ttt", state, asdict(config), time.perf_counter() - start, fell_back=True,
                                    reason=str(e), details=details)
        adapted = lora_state(model)
    return AdaptationResult("ttt", adapted, asdict(config), time.perf_counter() - start, trace=trace, details=details)


@torch.no_grad()
def pseudo_labels(model: torch.nn.Module, lm: LoadedModel, examples: Sequence[ChoiceExample], config: TttConfig,
                  chunk: int = 8) -> tuple[list[ChoiceExample], dict[str, Any]]:
    """The examples relabelled with the model's own answers, kept when confident and, with `balance`, at most
    ceil(kept / options) per answer position (the most confident first); and what was kept."""
    model.eval()
    answers, confidences, widths = [], [], []
    for i in range(0, len(examples), chunk):
        batch = collate_choices(lm, examples[i:i + chunk])
        probs = option_distribution(model, batch).exp()
        confidence, answer = probs.max(1)
        answers += answer.tolist()
        confidences += confidence.tolist()
        widths += [len(e.options) for e in examples[i:i + chunk]]
    kept = sorted((i for i, c in enumerate(confidences) if c >= config.confidence), key=lambda i: -confidences[i])
    if config.balance and kept:
        share = math.ceil(len(kept) / max(widths))
        count: dict[int, int] = {}
        balanced = []
        for i in kept:
            if count.get(answers[i], 0) < share:
                count[answers[i]] = count.get(answers[i], 0) + 1
                balanced.append(i)
        kept = balanced
    positions = [answers[i] for i in kept]
    details = {"pseudo_labels": len(kept), "unlabelled_items": len(examples),
               "pseudo_label_positions": {str(p): positions.count(p) for p in sorted(set(positions))}}
    return [ChoiceExample(examples[i].options, answers[i]) for i in sorted(kept)], details


def _pseudo_label_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return choice_loss(answer_logits(model, batch), batch)


def _infomax_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return infomax_loss(option_distribution(model, batch))


def apply(ctx: AdaptationContext, config: TttConfig, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    state, generated = ctx.generate(ctx.seed)
    result = apply_ttt(ctx.lm, state, ctx.lora, ctx.prompts, config, ctx.seed, ctx.items)
    return write_refined(ctx, out, result.state, {**generated.to_info(), **info, **outcome(result, started)})
