"""Load a causal LM and its tokenizer onto a device, ready for scoring or LoRA training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

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


def resolve_dtype(dtype: str) -> torch.dtype:
    return torch.bfloat16 if dtype == "auto" else _DTYPES[dtype]


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    add_special_tokens: bool
    """Passed to the tokenizer on every encode: its default (True) adds BOS where the tokenizer is built to,
    e.g. Gemma, whose outputs degrade without it, and nothing for SmolLM2 or Qwen2.5."""
    source: str
    """What `from_pretrained` was given: cache directory, local path or hub id."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

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
    model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(config.dtype))
    model.to(resolve_device(config.device)).eval()
    add_special = True if config.add_bos_token is None else config.add_bos_token
    return LoadedModel(model=model, tokenizer=tokenizer, add_special_tokens=add_special, source=source)
