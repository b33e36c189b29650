"""Generators outside this machine: a generator directory is self-describing (config.json, the record of how it
was trained; decoder.safetensors; README.md, its Hub model card), so it can be pushed to the Hugging Face Hub
(`degaml push`, in `commands.py`) and loaded by repo id (`huggingface_hub.snapshot_download`) wherever a
generator directory is taken."""

from __future__ import annotations

from pathlib import Path

SHARED_FILES = ["config.json", "decoder.safetensors", "README.md", "log.jsonl"]
"""What a pushed generator holds: no optimizer state (state.pt), no locks."""


def is_repo_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and not Path(source).exists()


def resolve_generator(source: str | Path) -> Path:
    """A generator directory from a local path or a Hub repo id (downloaded once into the Hub's cache)."""
    path = Path(source).expanduser()
    if path.exists() or not is_repo_id(str(source)):
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=str(source), allow_patterns=SHARED_FILES))
