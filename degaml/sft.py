"""Supervised examples: the gold answer after its context, the context masked out of the loss. Shared by
trajectory collection and the baselines, so every LoRA in the project is trained on the same objective.
Also the plain LoRA optimization loop shared by the baselines' fine-tuning and test-time training, LoRA
fine-tuning on labelled examples (the baselines', DeGAML-k's), and the held-out loss that compares adapters."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from .config import AnswerFormat, LoraSettings
from .data import MultipleChoiceItem
from .evaluation.generative import adds_special_tokens, answer_text, build_prompt
from .evaluation.loglikelihood import encode_request
from .models import LoadedModel, LoraState, lora_state, peft_model

Example = tuple[list[int], list[int]]
"""(input ids, labels); labels are -100 on the context."""


def training_example(lm: LoadedModel, item: MultipleChoiceItem, max_tokens: int, option: int | None = None,
                     answer_format: AnswerFormat = "loglikelihood") -> Example:
    """(input ids, labels) for an answer (the gold one unless `option` says which) after its context,
    tokenized exactly as `answer_format`'s protocol reads it; left-truncated to `max_tokens`."""
    option = item.gold if option is None else option
    if answer_format == "generative":
        context = lm.tokenizer(build_prompt(lm, item), add_special_tokens=adds_special_tokens(lm)).input_ids
        answer = lm.tokenizer(answer_text(option, len(item.choices)), add_special_tokens=False).input_ids
        tokens = (context + answer)[-max_tokens:]
        scored = min(len(answer), len(tokens))
        return tokens, [-100] * (len(tokens) - scored) + tokens[len(tokens) - scored:]
    request = encode_request(lm, item.contexts[option], item.continuations[option], max_tokens - 1)
    tokens = list(request.tokens)
    labels = [-100] * request.context_length + tokens[request.context_length:]
    return tokens, labels


def collate(examples: Sequence[Example], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(t) for t, _ in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for i, (t, lab) in enumerate(examples):
        ids[i, :len(t)], labels[i, :len(t)], mask[i, :len(t)] = torch.tensor(t), torch.tensor(lab), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@contextmanager
def recomputed_activations(model: torch.nn.Module) -> Iterator[None]:
    """Gradient checkpointing for the block: each layer's activations are recomputed in the backward pass
    instead of kept. The gradients are the same; what changes is memory, and on a CPU often time too. The
    choice-level objectives train on every option of an item (packed behind a tree attention mask, one row per
    item), and long many-option items are where kept activations ran a 2-core machine out of memory."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        model.activation_checkpointing_disable()


def train_lora(model: torch.nn.Module, next_batch: Callable[[], dict[str, torch.Tensor]], steps: int, lr: float,
               loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None
               ) -> list[float]:
    """`steps` AdamW steps (constant lr) on the trainable parameters of `model` (its LoRA), one batch from
    `next_batch()` each, minimizing `loss_fn(model, batch)` (default: the model's causal-LM loss); returns the
    losses. A non-finite loss raises FloatingPointError naming the step, before that step updates anything."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        batch = next_batch()
        loss = loss_fn(model, batch) if loss_fn is not None else model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def sample_batch(lm: LoadedModel, examples: Sequence[Example], size: int, rng: torch.Generator
                 ) -> dict[str, torch.Tensor]:
    """`size` examples drawn with replacement, collated and moved to the model's device."""
    picks = torch.randint(len(examples), (size,), generator=rng).tolist()
    return {k: v.to(lm.device) for k, v in collate([examples[i] for i in picks], lm.tokenizer.pad_token_id).items()}


def fine_tune(lm: LoadedModel, lora: LoraSettings, examples: Sequence[Example], steps: int, lr: float,
              batch_size: int, seed: int, init: LoraState | None = None) -> tuple[LoraState, list[float]]:
    """Plain LoRA fine-tuning (AdamW, constant lr) from `init` or PEFT's standard init; the base model is
    left bare afterwards."""
    torch.manual_seed(seed)  # PEFT's init of A
    sampler = torch.Generator().manual_seed(seed)
    with peft_model(lm, lora, init) as model:
        losses = train_lora(model, lambda: sample_batch(lm, examples, batch_size, sampler), steps, lr)
        return lora_state(model), losses


@torch.no_grad()
def examples_loss(lm: LoadedModel, lora: LoraSettings, state: LoraState, examples: Sequence[Example],
                  batch_size: int = 8) -> float:
    """The mean answer-token loss of `examples` under the adapter `state` (every answer token weighs the same,
    whatever the batching)."""
    if not examples:
        raise ValueError("examples_loss needs at least one example")
    total, tokens = 0.0, 0
    with peft_model(lm, lora, state) as model:
        model.eval()
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start:start + batch_size], lm.tokenizer.pad_token_id)
            batch = {k: v.to(lm.device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels,
                                                       ignore_index=-100, reduction="sum")
            total += float(losses)
            tokens += int((labels != -100).sum())
    return total / tokens
