"""The hyper-convolutional decoder of "Drag-and-Drop LLMs" (Liang et al. 2025), docs/design.md, generator.

Features are (N, H, W) maps: N prompts (later: parameter tokens), H and W token/feature axes. A layer
maps (N, H, W) -> (N', H', W'):

    x  = LayerNorm over (H, W)
    b1 = conv[H->H'](conv[W->W'](x))          conv[A->A']: axis A as channels, k x k over the other two
    b2 = tanh(conv[W->W'](conv[H->H'](x)))
    y  = (b1 + b2 + bias[H', W']) / 3
    out = conv[N->N'](y)                        with bias: mixes prompts into parameter tokens

The stack runs from the condition (N prompts, L tokens, encoder dim) to the parameter tokens
(num_tokens, r + 2, chunk + 2); the shapes in between are the config.

With `head_rank` > 0, a task-code head adds U z: z = MLP(LayerNorm(the condition's mean over prompts and
tokens)) has `head_rank` dimensions and U one full token map per dimension (zero at first). The convolutions
share weights across token positions; the head gives each token its own weights on the task's code.

With `residual`, the stack predicts a change to a learned base (initialized by the trainer at the tokens
of the mean training adapter) and its last layer starts near zero: a generator that ignores its
condition *is* the mean adapter, so anything the task adds shows up as a difference from that adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .settings import DecoderConfig, Shape

_RESIDUAL_INIT_SCALE = 0.01
_HEAD_HIDDEN = 256
"""Width of the task-code head's MLP."""


def _conv(c_in: int, c_out: int, k: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


def _along(conv: nn.Conv2d, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Apply `conv` with feature axis `axis` (2 = H, 3 = W) of x (B, N, H, W) as its channels."""
    if axis == 3:
        return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return conv(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)


class HyperConvLayer(nn.Module):
    def __init__(self, in_shape: Shape, out_shape: Shape, kernel_size: int) -> None:
        super().__init__()
        (n, h, w), (n2, h2, w2), k = in_shape, out_shape, kernel_size
        self.norm = nn.LayerNorm([h, w])
        self.branch1_w, self.branch1_h = _conv(w, w2, k, False), _conv(h, h2, k, False)
        self.branch2_h, self.branch2_w = _conv(h, h2, k, False), _conv(w, w2, k, False)
        self.bias = nn.Parameter(torch.zeros(h2, w2))
        self.mix = _conv(n, n2, k, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        b1 = _along(self.branch1_h, _along(self.branch1_w, x, 3), 2)
        b2 = torch.tanh(_along(self.branch2_w, _along(self.branch2_h, x, 2), 3))
        return self.mix((b1 + b2 + self.bias) / 3)


def layer_parameter_count(in_shape: Shape, out_shape: Shape, k: int) -> int:
    (n, h, w), (n2, h2, w2) = in_shape, out_shape
    return 2 * h * w + 2 * (w * w2 + h * h2) * k * k + h2 * w2 + n * n2 * k * k + n2


class TaskCodeHead(nn.Module):
    """Condition (B, N, L, D) -> U z (B, T, H, W), z = MLP(LayerNorm(mean over N and L)) in `rank` dimensions."""

    def __init__(self, embed_dim: int, rank: int, token_shape: Shape) -> None:
        super().__init__()
        self.code = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, _HEAD_HIDDEN), nn.GELU(),
                                  nn.Linear(_HEAD_HIDDEN, rank))
        self.directions = nn.Parameter(torch.zeros(rank, *token_shape))  # zero: the head starts adding nothing

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        z = self.code(condition.mean((1, 2)))
        return torch.einsum("br,rthw->bthw", z, self.directions)

    @staticmethod
    def parameter_count(embed_dim: int, rank: int, token_shape: Shape) -> int:
        t, h, w = token_shape
        return 2 * embed_dim + (embed_dim + 1) * _HEAD_HIDDEN + (_HEAD_HIDDEN + 1) * rank + rank * t * h * w


class HyperConvDecoder(nn.Module):
    """Condition (B, N, L, D) -> parameter tokens (B, T, r + 2, chunk + 2)."""

    def __init__(self, config: DecoderConfig, condition_shape: Shape, token_shape: Shape,
                 residual: bool = False) -> None:
        super().__init__()
        self.config = config
        self.shapes = [tuple(condition_shape), *config.hidden_shapes, tuple(token_shape)]
        self.layers = nn.ModuleList(
            HyperConvLayer(a, b, config.kernel_size) for a, b in zip(self.shapes, self.shapes[1:])
        )
        self.head = TaskCodeHead(condition_shape[-1], config.head_rank, token_shape) if config.head_rank else None
        self.base = nn.Parameter(torch.zeros(token_shape)) if residual else None
        if residual:
            with torch.no_grad():  # start at the base; the task signal has to earn its way in
                self.layers[-1].mix.weight.mul_(_RESIDUAL_INIT_SCALE)
                self.layers[-1].mix.bias.zero_()

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        if tuple(condition.shape[1:]) != self.shapes[0]:
            raise ValueError(f"condition has shape {tuple(condition.shape[1:])} per sample, the decoder needs {self.shapes[0]}")
        x = condition
        for layer in self.layers:
            x = layer(x)
        if self.head is not None:
            x = x + self.head(condition)
        return x if self.base is None else x + self.base

    @staticmethod
    def parameter_count(config: DecoderConfig, condition_shape: Shape, token_shape: Shape) -> int:
        """Exact count from the shapes alone (the paper's config has over a billion; no need to build it)."""
        shapes: Sequence[Shape] = [tuple(condition_shape), *config.hidden_shapes, tuple(token_shape)]
        head = TaskCodeHead.parameter_count(shapes[0][-1], config.head_rank, shapes[-1]) if config.head_rank else 0
        return head + sum(layer_parameter_count(a, b, config.kernel_size) for a, b in zip(shapes, shapes[1:]))
