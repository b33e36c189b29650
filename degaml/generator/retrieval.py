"""The retrieval mixture: a zero-label floor for the generator.

The training tasks' own adapters, weighted by how much the new task's prompts look like theirs:
softmax over the cosine similarities of mean prompt embeddings (the generator's frozen encoder, mean-pooled
over tokens, normalized per prompt, averaged over prompts), divided by a temperature, then LoraHub's
combination (sum_k w_k A_k, sum_k w_k B_k). No labels, no training, seconds to compute: a generator that
does not beat it has learned nothing a lookup would not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..models import LoraState, weighted_adapter_sum
from .encoder import PromptEncoder


def prompt_embedding(encoder: PromptEncoder, prompts: Sequence[str]) -> torch.Tensor:
    """(dim,) unit vector: a task's mean prompt embedding."""
    states = encoder.encode(list(prompts))  # (N, L, D), zero rows past each prompt's end
    valid = (states.abs().sum(-1) > 0).float()
    pooled = (states * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
    return F.normalize(F.normalize(pooled, dim=-1).mean(0), dim=0)


def retrieval_weights(target: torch.Tensor, library: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(cos(target, library_k) / temperature) over the K library tasks; target (D,), library (K, D)."""
    if temperature <= 0:
        raise ValueError(f"retrieval temperature must be > 0, got {temperature}")
    return torch.softmax(F.normalize(library, dim=-1) @ F.normalize(target, dim=0) / temperature, 0)


class RetrievalLibrary:
    """The training tasks' adapters, each with its mean prompt embedding, embedded once: a mixture for any new
    task's unlabelled prompts (its own, or a prompt control's) costs one embedding and one weighted sum."""

    def __init__(self, library: dict[str, tuple[Sequence[str], LoraState]], encoder: PromptEncoder) -> None:
        """`library` maps each training task to (its prompts, its adapter)."""
        if not library:
            raise ValueError("the retrieval mixture needs at least one training task's adapter")
        self.encoder = encoder
        self.names = list(library)
        self.adapters = [library[n][1] for n in self.names]
        self.embeddings = torch.stack([prompt_embedding(encoder, library[n][0]) for n in self.names])

    def mixture(self, prompts: Sequence[str], temperature: float = 0.05) -> tuple[LoraState, dict[str, float]]:
        """(mixed adapter, weight per library task) for a new task from its unlabelled prompts."""
        weights = retrieval_weights(prompt_embedding(self.encoder, prompts), self.embeddings, temperature)
        return weighted_adapter_sum(self.adapters, weights.tolist()), dict(zip(self.names, weights.tolist()))
