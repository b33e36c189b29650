"""A vector added to the LM head's input: the primitive under latent-space adaptation (SLOT)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .loading import LoadedModel


@contextmanager
def latent_delta(lm: LoadedModel, delta: torch.Tensor) -> Iterator[None]:
    """Add `delta` to the LM head's input for every forward pass inside the block."""
    head = lm.model.get_output_embeddings()

    def add(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (inputs[0] + delta.to(inputs[0].dtype),)

    handle = head.register_forward_pre_hook(add)
    try:
        yield
    finally:
        handle.remove()
