"""The task loss of a generated adapter: the frozen base model's causal-LM loss on labelled examples with
a LoRA given as tensors (the generator's output), differentiable in those tensors.

The LoRA layers are attached once; each call swaps the generated A and B in for PEFT's parameters with
`torch.func.functional_call`, so gradients flow to the generator and never into the base model.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from ..config import LoraSettings
from ..models import LoadedModel, attach_lora


class AdapterLoss:
    """`loss(state, batch)`: mean answer-token cross-entropy of `lm` with the LoRA `state` (PEFT keys)."""

    def __init__(self, lm: LoadedModel, lora: LoraSettings) -> None:
        self.lm = lm
        self.model = attach_lora(lm.model, lora)
        self.model.eval()  # no dropout: the generator is what is trained
        self.model.requires_grad_(False)
        # PEFT names a parameter `...q_proj.lora_A.default.weight`; its state dict drops the adapter name.
        self._names = {name.replace(".default", ""): name for name, _ in self.model.named_parameters() if "lora_" in name}

    def __call__(self, state: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = self._names.keys() - state.keys()
        if missing:
            raise KeyError(f"generated adapter lacks {len(missing)} LoRA tensors, e.g. {sorted(missing)[0]!r}")
        device = self.lm.device
        params = {self._names[k]: v.to(device) for k, v in state.items()}
        return functional_call(self.model, params, args=(), kwargs=batch, strict=False).loss

    def close(self) -> None:
        """Remove the LoRA layers: the base model is left as it was."""
        self.model.unload()
        self.lm.model.eval()
