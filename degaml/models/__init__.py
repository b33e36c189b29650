"""Base models (offline defaults or any HF causal LM) and LoRA adapters on them."""

from .loading import LoadedModel, load_model
from .lora import (
    AdapterMismatchError,
    LoraGeometry,
    LoraModuleGeometry,
    attach_lora,
    check_adapter_fits,
    delta_cosine,
    delta_inner,
    delta_norm,
    delta_relative_error,
    load_adapter,
    lora_state,
    peft_model,
    save_adapter,
    weighted_adapter_sum,
)
from .registry import OFFLINE_MODELS, cache_root, resolve_model

__all__ = [
    "OFFLINE_MODELS",
    "AdapterMismatchError",
    "LoadedModel",
    "LoraGeometry",
    "LoraModuleGeometry",
    "attach_lora",
    "cache_root",
    "check_adapter_fits",
    "delta_cosine",
    "delta_inner",
    "delta_norm",
    "delta_relative_error",
    "load_adapter",
    "load_model",
    "lora_state",
    "peft_model",
    "resolve_model",
    "save_adapter",
    "weighted_adapter_sum",
]
