"""Load a causal LM and its tokenizer onto a device, ready for scoring or LoRA training."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..config import ModelConfig
from .registry import resolve_model

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def process_state():
    """This process's place among those `accelerate launch` (or torch.distributed.run) started: a single
    process otherwise. On a machine without CUDA the processes talk over gloo (accelerate only sets that up
    when told it runs on CPU)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""CPU flags (x86 `flags`, or aarch64 `Features`, of /proc/cpuinfo) of an instruction set that computes bf16
matrix products natively. Without one, PyTorch emulates bf16 through float32 conversions and runs 7-23x slower
than float32 (SmolLM2-135M forward + backward on an AVX2-only CPU: 115 s against 5 s)."""


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them; empty where /proc/cpuinfo does not exist (macOS,
    Windows), which `choose_precision` reads as "no native bf16"."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_kind() -> str:
    """One line naming the CPU's vector capability and its native-bf16 flags, printed beside timings."""
    native = sorted(f for f in cpu_flags() if f in NATIVE_BF16_CPU_FLAGS or f.startswith("amx"))
    return (f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}, "
            + (f"bf16 flags: {', '.join(native)}" if native else "no bf16 flags"))


@dataclass(frozen=True)
class Precision:
    """The dtype a model runs in and why: `choose_precision`'s answer, recorded with every result."""

    dtype: str
    reason: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


def choose_precision(requested: str, device: torch.device, checkpoint_dtype: str | None = None) -> Precision:
    """The dtype for `requested` on `device`. `auto` takes bfloat16 only where the hardware computes it natively:
    a CPU with one of `NATIVE_BF16_CPU_FLAGS`, or a CUDA device that supports it. A CUDA device without bf16 gets
    float16 only for a checkpoint stored in float16 (a model trained in bf16, as Qwen2.5 is, can overflow
    float16's range, and LoRA training here has no loss scaling); everything else runs in float32."""
    if requested != "auto":
        if requested not in _DTYPES:
            raise ValueError(f"dtype must be auto or one of {sorted(_DTYPES)}, got {requested!r}")
        return Precision(requested, "requested")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bfloat16", f"auto: CUDA device {torch.cuda.get_device_name(device)} supports bf16")
        if checkpoint_dtype == "float16":
            return Precision("float16", "auto: CUDA device without bf16; the checkpoint is stored in float16")
        return Precision("float32", "auto: CUDA device without bf16, and the checkpoint is not stored in float16 "
                                    f"({checkpoint_dtype or 'dtype unknown'}), so float16 could overflow")
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        native = sorted(set(NATIVE_BF16_CPU_FLAGS) & cpu_flags())
        # On x86 PyTorch's kernels use the flags only when it dispatches AVX-512 (ATEN_CPU_CAPABILITY can lower it).
        if native and (platform.machine().lower() not in ("x86_64", "amd64") or capability.startswith("AVX512")):
            return Precision("bfloat16", f"auto: the CPU computes bf16 natively ({', '.join(native)}; {capability})")
        return Precision("float32", f"auto: the CPU does not compute bf16 natively ({capability}, flags: "
                                    f"{', '.join(native) or 'none of ' + ', '.join(NATIVE_BF16_CPU_FLAGS)}), where "
                                    "bf16 runs many times slower than float32")
    return Precision("float32", f"auto: float32 on {device.type}")


def _checkpoint_dtype(source: str) -> str | None:
    """The dtype a checkpoint's config declares (read only where the choice depends on it)."""
    config = AutoConfig.from_pretrained(source)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    add_special_tokens: bool
    """Passed to the tokenizer on every encode: its default (True) adds BOS where the tokenizer is built to,
    e.g. Gemma, whose outputs degrade without it, and nothing for SmolLM2 or Qwen2.5."""
    source: str
    """What `from_pretrained` was given: cache directory, local path or hub id."""
    precision: Precision = Precision("float32", "requested")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def compute(self) -> dict[str, Any]:
        """Where and in what dtype this model runs, and why: part of every result's metadata."""
        return {"device": str(self.device), **asdict(self.precision), "cpu": cpu_kind()}

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=self.add_special_tokens).input_ids

    @property
    def prefix_token_id(self) -> int:
        """Token that stands in for an empty context (BOS, else EOS), as lm-evaluation-harness uses."""
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def load_model(config: ModelConfig) -> LoadedModel:
    source = resolve_model(config.name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = resolve_device(config.device)
    stored = _checkpoint_dtype(source) if config.dtype == "auto" and device.type == "cuda" else None
    precision = choose_precision(config.dtype, device, stored)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=precision.torch_dtype)
    model.to(device).eval()
    add_special = True if config.add_bos_token is None else config.add_bos_token
    return LoadedModel(model=model, tokenizer=tokenizer, add_special_tokens=add_special, source=source,
                       precision=precision)
