"""Base models (offline defaults or any HF causal LM) and LoRA adapters on them."""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    'adapted_output': ('AdaptedOutput', 'copy_output', 'write_adapter', 'write_ensemble'),
    'hidden_delta': ('latent_delta',),
    'loading': ('LoadedModel', 'load_model', 'process_state'),
    'lora': ('AdapterMismatchError', 'LoraGeometry', 'LoraModuleGeometry', 'LoraState', 'attach_lora', 'check_adapter_fits', 'delta_change_cosine', 'delta_cosine', 'delta_inner', 'delta_norm', 'delta_relative_error', 'load_adapter', 'lora_state', 'peft_model', 'read_lora_state', 'weighted_adapter_sum'),
    'registry': ('OFFLINE_MODELS', 'cache_root', 'resolve_model'),
})
