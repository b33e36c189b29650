"""Base models (offline defaults or any HF causal LM) and LoRA adapters on them."""

from .adapted_output import AdaptedOutput, copy_output, write_adapter, write_ensemble
from .hidden_delta import latent_delta
from .loading import LoadedModel, load_model, process_state
from .lora import (
    AdapterMismatchError,
    LoraGeometry,
    LoraModuleGeometry,
    LoraState,
    attach_lora,
    check_adapter_fits,
    delta_change_cosine,
    delta_cosine,
    delta_inner,
    delta_norm,
    delta_relative_error,
    load_adapter,
    lora_state,
    peft_model,
    read_lora_state,
    weighted_adapter_sum,
)
from .registry import OFFLINE_MODELS, cache_root, resolve_model

__all__ = [
    "AdaptedOutput",
    "copy_output",
    "latent_delta",
    "write_adapter",
    "write_ensemble",
    "OFFLINE_MODELS",
    "AdapterMismatchError",
    "LoadedModel",
    "LoraGeometry",
    "LoraModuleGeometry",
    "LoraState",
    "attach_lora",
    "cache_root",
    "check_adapter_fits",
    "delta_change_cosine",
    "delta_cosine",
    "delta_inner",
    "delta_norm",
    "delta_relative_error",
    "load_adapter",
    "load_model",
    "lora_state",
    "peft_model",
    "read_lora_state",
    "process_state",
    "resolve_model",
    "weighted_adapter_sum",
]
