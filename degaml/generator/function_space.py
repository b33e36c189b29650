"""The task loss of a generated adapter: the frozen base model's causal-LM loss on labelled examples with
a LoRA given as tensors (the generator's output), differentiable in those tensors.

The LoRA layers are attached once; each call swaps the generated A and B in for PEFT's parameters with
`torch.func.functional_call`, so gradients flow to the generator and never into the base model.

Two losses on the answers (`kind`): `answer`, the mean cross-entropy of the gold answer's tokens (what
supervised fine-tuning minimizes), and `choice`, a cross-entropy over each item's options, each scored by
its mean answer-token log-likelihood. Accuracy asks that the gold answer outscore the others; the answer
loss can be lowered by raising every plausible answer at once, the choice loss cannot.

The optional anchor is the KL divergence from the base model's next-token distribution to the adapted one
at the positions that predict context tokens (the question, passage and options, never the answer). The
answer loss alone rewards any change that raises the gold answers of the training tasks, including changes
to how the model reads ordinary text, which is what continuation-scored tasks (PIQA, HellaSwag) are made
of; the anchor charges for those changes and leaves the answer positions free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..choice import MODEL_INPUTS, choice_loss
from ..config import LoraSettings
from ..models import LoadedModel, attach_lora


def context_positions(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T) bool: the positions whose output predicts a context token (never an answer, never padding): in a
    `sft.collate` batch, position t predicts token t + 1; a `choice.collate_choices` batch says it per position."""
    if "answer" in batch:
        return (batch["target"] != -100) & ~batch["answer"]
    labels, mask = batch["labels"], batch["attention_mask"].bool()
    positions = torch.zeros_like(mask)
    positions[:, :-1] = (labels[:, 1:] == -100) & mask[:, 1:] & mask[:, :-1]
    return positions


def anchor_kl(adapted_logits: torch.Tensor, base_logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Mean over `positions` of KL(base || adapted) of the next-token distributions, in float32 (nats)."""
    if not positions.any():
        return adapted_logits.sum() * 0.0  # keeps the graph; no context position to anchor
    adapted = F.log_softmax(adapted_logits[positions].float(), dim=-1)
    base = F.log_softmax(base_logits[positions].float(), dim=-1)
    return F.kl_div(adapted, base, log_target=True, reduction="batchmean")


class AdapterLoss:
    """`terms(state, batch)`: the task loss of `lm` with the LoRA `state` (PEFT keys): the answer loss of a
    `sft.collate` batch or the choice loss of a `choice_batch`; with `anchor` > 0 also the context-position
    KL to the base model. `loss` combines them."""

    def __init__(self, lm: LoadedModel, lora: LoraSettings, anchor: float = 0.0) -> None:
        if anchor < 0:
            raise ValueError(f"anchor must be >= 0, got {anchor}")
        self.lm = lm
        self.anchor = anchor
        self.model = attach_lora(lm.model, lora)
        self.model.eval()  # no dropout: the generator is what is trained
        self.model.requires_grad_(False)
        # PEFT names a parameter `...q_proj.lora_A.default.weight`; its state dict drops the adapter name.
        self._names = {name.replace(".default", ""): name for name, _ in self.model.named_parameters() if "lora_" in name}

    def terms(self, state: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = self._names.keys() - state.keys()
        if missing:
            raise KeyError(f"generated adapter lacks {len(missing)} LoRA tensors, e.g. {sorted(missing)[0]!r}")
        device = self.lm.device
        params = {self._names[k]: v.to(device) for k, v in state.items()}
        choice = "option_item" in batch
        inputs = {k: batch[k] for k in MODEL_INPUTS} if choice else {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        out = functional_call(self.model, params, args=(), kwargs=inputs, strict=False)
        # The full logits, not `answer_logits`: the anchor reads the context positions too.
        terms = {"task_loss": choice_loss(out.logits[batch["answer"]], batch) if choice else out.loss}
        if self.anchor > 0:
            with torch.no_grad(), self.model.disable_adapter():
                base_logits = self.model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
            terms["anchor"] = anchor_kl(out.logits, base_logits, context_positions(batch))
        return terms

    def loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return terms["task_loss"] + self.anchor * terms["anchor"] if self.anchor > 0 else terms["task_loss"]

    def __call__(self, state: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(self.terms(state, batch))

    def close(self) -> None:
        """Remove the LoRA layers: the base model is left as it was."""
        self.model.unload()
        self.lm.model.eval()
