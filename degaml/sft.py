"""Supervised examples: the gold answer after its context, the context masked out of the loss. Shared by
trajectory collection and the baselines, so every LoRA in the project is trained on the same objective.
Also the plain LoRA optimization loop shared by the baselines' fine-tuning and test-time training."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .data import MultipleChoiceItem
from .evaluation.loglikelihood import encode_request
from .models import LoadedModel

Example = tuple[list[int], list[int]]
"""(input ids, labels); labels are -100 on the context."""


def training_example(lm: LoadedModel, item: MultipleChoiceItem, max_tokens: int) -> Example:
    """(input ids, labels) for the gold answer after its context, tokenized exactly as it is scored."""
    request = encode_request(lm, item.contexts[item.gold], item.continuations[item.gold], max_tokens - 1)
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


def train_lora(model: torch.nn.Module, next_batch: Callable[[], dict[str, torch.Tensor]], steps: int, lr: float
               ) -> list[float]:
    """`steps` AdamW steps (constant lr) on the trainable parameters of `model` (its LoRA), one batch from
    `next_batch()` each; returns the losses. A non-finite loss raises FloatingPointError naming the step,
    before that step updates anything."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        loss = model(**next_batch()).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def sample_batch(lm: LoadedModel, examples: Sequence[Example], size: int, generator: torch.Generator
                 ) -> dict[str, torch.Tensor]:
    """`size` examples drawn with replacement, collated and moved to the model's device."""
    picks = torch.randint(len(examples), (size,), generator=generator).tolist()
    return {k: v.to(lm.device) for k, v in collate([examples[i] for i in picks], lm.tokenizer.pad_token_id).items()}
