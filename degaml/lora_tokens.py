"""Parameter tokenization: a LoRA adapter <-> a sequence of fixed-size tokens (docs/design.md).

The contract between trajectories and the generator. For each layer, modules in the order
q, k, v, o, up, gate, down; for each module lora_A (r x d_in) then lora_B transposed (r x d_out); each
cut along its long axis into r x `chunk` pieces (the last one zero-padded when d is not a multiple of
`chunk`). Each piece is z-scored with its own mean and std, and its statistics are written into two
extra rows and two extra columns, giving tokens of (r + 2) x (chunk + 2):

    rows 0..r-1, cols 0..chunk-1   normalized values (0 where padded)
    row r (all columns)            mean' = 8 * mean                          (stat_code "paper", "log")
                                   mean' = mean / (std + 1e-6)              (stat_code "relative")
    row r + 1 (all columns)        std'  = log(0.9 * std + 0.1) + 1.6        (stat_code "paper")
                                   std'  = log(std + 1e-6)                  (stat_code "log", "relative")
    col chunk, rows 0..r-1         mean'
    col chunk + 1, rows 0..r-1     std'

The paper's std code bottoms out at log(0.1) + 1.6 = -0.70, so small scales (lora_B's chunks are ~1e-3)
sit a few hundredths above it and a small token error zeroes or doubles them; the `log` code resolves
every scale with the same relative precision. The paper's mean code has the same flaw in absolute terms
(an error of 0.01 shifts a chunk by 1.25e-3, the size of lora_B itself); `relative` stores the mean in
units of the chunk's own std. `benchmarks/stat_code.py` measures the three. Detokenization averages the copies of each statistic that
hold data (the padded columns of a module's last piece are masked in training and are never decoded), so
a generator's noisy copies are pooled. Everything is derived from the LoRA geometry: any model, any rank,
any chunk size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .config import StatCode
from .models.lora import LoraGeometry, LoraModuleGeometry

MODULE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "gate_proj", "down_proj")
_MIN_STD = 1e-8  # a constant piece (e.g. PEFT's zero-initialized lora_B) has std 0
_LOG_STD_EPSILON = 1e-6
STAT_CODES = ("paper", "log", "relative")


def encode_mean(mean: torch.Tensor, std: torch.Tensor | None = None, code: StatCode = "paper") -> torch.Tensor:
    if code == "relative":
        return mean / (std + _LOG_STD_EPSILON)
    return 8 * mean


def decode_mean(encoded: torch.Tensor, std: torch.Tensor | None = None, code: StatCode = "paper") -> torch.Tensor:
    if code == "relative":
        return encoded * (std + _LOG_STD_EPSILON)
    return encoded / 8


def encode_std(std: torch.Tensor, code: StatCode = "paper") -> torch.Tensor:
    if code in ("log", "relative"):
        return torch.log(std + _LOG_STD_EPSILON)
    return torch.log(0.9 * std + 0.1) + 1.6


def decode_std(encoded: torch.Tensor, code: StatCode = "paper") -> torch.Tensor:
    if code in ("log", "relative"):
        return (torch.exp(encoded) - _LOG_STD_EPSILON).clamp(min=0)
    return ((torch.exp(encoded - 1.6) - 0.1) / 0.9).clamp(min=0)


@dataclass(frozen=True)
class TokenSlot:
    """Where one token comes from: a module's A or B^T, columns [start, start + width) of it."""

    module: LoraModuleGeometry
    part: str  # "A" or "B"
    start: int
    width: int  # valid columns; < chunk only in a module's last piece

    @property
    def state_dict_key(self) -> str:
        return f"base_model.model.{self.module.path}.lora_{self.part}.weight"


@dataclass(frozen=True)
class TokenLayout:
    """The token sequence for a LoRA geometry and chunk size; computed from shapes alone."""

    geometry: LoraGeometry
    chunk: int
    slots: tuple[TokenSlot, ...]
    stat_code: StatCode = "paper"

    @classmethod
    def from_geometry(cls, geometry: LoraGeometry, chunk: int = 128, stat_code: StatCode = "paper") -> TokenLayout:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if stat_code not in STAT_CODES:
            raise ValueError(f"stat_code must be one of {', '.join(STAT_CODES)}, got {stat_code!r}")

        def order(m: LoraModuleGeometry) -> tuple[int, int]:
            rank = MODULE_ORDER.index(m.kind) if m.kind in MODULE_ORDER else len(MODULE_ORDER)
            return (m.layer, rank)

        slots = []
        for module in sorted(geometry.modules, key=order):  # stable: unknown kinds keep model order
            for part, length in (("A", module.in_features), ("B", module.out_features)):
                for start in range(0, length, chunk):
                    slots.append(TokenSlot(module, part, start, min(chunk, length - start)))
        return cls(geometry=geometry, chunk=chunk, slots=tuple(slots), stat_code=stat_code)

    @property
    def num_tokens(self) -> int:
        return len(self.slots)

    @property
    def token_shape(self) -> tuple[int, int]:
        return (self.geometry.rank + 2, self.chunk + 2)

    @functools.cached_property
    def matrix_runs(self) -> tuple[tuple[str, int, int, int], ...]:
        """(state dict key, first token, end token, columns) of each matrix (A, or B transposed), in order."""
        runs: list[tuple[str, int, int, int]] = []
        for i, slot in enumerate(self.slots):
            if runs and runs[-1][0] == slot.state_dict_key:
                key, first, _, length = runs[-1]
                runs[-1] = (key, first, i + 1, length + slot.width)
            else:
                runs.append((slot.state_dict_key, i, i + 1, slot.width))
        return tuple(runs)

    def padding_mask(self) -> torch.Tensor:
        """(tokens, r + 2, chunk + 2) bool: True where a cell holds data, False where it is padding."""
        return self._padding_mask.clone()

    @functools.cached_property
    def _padding_mask(self) -> torch.Tensor:
        r, c = self.geometry.rank, self.chunk
        mask = torch.ones(self.num_tokens, r + 2, c + 2, dtype=torch.bool)
        for i, slot in enumerate(self.slots):
            if slot.width < c:
                mask[i, :, slot.width:c] = False
        return mask


def _pieces(state_dict: dict[str, torch.Tensor], slot: TokenSlot) -> torch.Tensor:
    if slot.state_dict_key not in state_dict:
        raise KeyError(f"adapter state dict has no {slot.state_dict_key!r}")
    weight = state_dict[slot.state_dict_key]
    expected = slot.module.a_shape if slot.part == "A" else slot.module.b_shape
    if tuple(weight.shape) != expected:
        raise ValueError(f"{slot.state_dict_key}: shape {tuple(weight.shape)}, the layout needs {expected}")
    matrix = weight if slot.part == "A" else weight.T  # both r x d
    return matrix[:, slot.start:slot.start + slot.width].float()


def tokenize(state_dict: dict[str, torch.Tensor], layout: TokenLayout) -> torch.Tensor:
    """PEFT LoRA state dict -> (tokens, r + 2, chunk + 2) float32 tensor."""
    r, c = layout.geometry.rank, layout.chunk
    tokens = torch.zeros(layout.num_tokens, r + 2, c + 2)
    for i, slot in enumerate(layout.slots):
        piece = _pieces(state_dict, slot)
        mean, std = piece.mean(), piece.std(unbiased=False)
        tokens[i, :r, :slot.width] = (piece - mean) / std.clamp(min=_MIN_STD)
        m, s = encode_mean(mean, std, layout.stat_code), encode_std(std, layout.stat_code)
        tokens[i, r, :] = m
        tokens[i, r + 1, :] = s
        tokens[i, :r, c] = m
        tokens[i, :r, c + 1] = s
    return tokens


def detokenize(tokens: torch.Tensor, layout: TokenLayout) -> dict[str, torch.Tensor]:
    """(tokens, r + 2, chunk + 2) -> PEFT LoRA state dict (float32), reading statistics back from every copy."""
    r, c = layout.geometry.rank, layout.chunk
    if tuple(tokens.shape) != (layout.num_tokens, r + 2, c + 2):
        raise ValueError(f"tokens have shape {tuple(tokens.shape)}, the layout needs "
                         f"{(layout.num_tokens, r + 2, c + 2)}")
    tokens = tokens.float()
    valid = layout.padding_mask().to(tokens.device)
    copies = valid[:, r, :].sum(-1) + r  # the statistic row's valid cells plus the statistic column

    def pooled(row: int, col: int) -> torch.Tensor:
        return ((tokens[:, row, :] * valid[:, row, :]).sum(-1) + tokens[:, :r, col].sum(-1)) / copies

    std = decode_std(pooled(r + 1, c + 1), layout.stat_code)
    mean = decode_mean(pooled(r, c), std, layout.stat_code)
    values = tokens[:, :r, :c] * std.clamp(min=_MIN_STD)[:, None, None] + mean[:, None, None]
    # A matrix's slots are consecutive tokens in column order, so laying them side by side and cutting at
    # its length (which drops the last slot's padding) rebuilds it: a few ops per matrix, not per token.
    matrices = {key: values[first:end].permute(1, 0, 2).reshape(r, (end - first) * c)[:, :length]
                for key, first, end, length in layout.matrix_runs}
    return {k: (v.contiguous() if ".lora_A." in k else v.T.contiguous()) for k, v in matrices.items()}

