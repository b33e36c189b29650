"""Generators outside this machine: a generator directory is self-describing (config.json, the card of how it
was trained; decoder.safetensors; README.md, its Hub model card), so it can be pushed to the Hugging Face Hub
(`degaml push`, `huggingface_hub.upload_folder`) and loaded by repo id (`huggingface_hub.snapshot_download`)
wherever a generator directory is taken."""

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


def push(generator: Path, repo: str, private: bool = False, token: str | None = None) -> None:
    """Upload a trained generator to the Hugging Face Hub, creating the repository if needed.

    It uploads the config, decoder weights, model card and training log, never the optimizer state. Load it
    back with `degaml generate --generator <repo>` or `Generator("<repo>")`.

    Args:
        generator: A trained generator directory (`degaml train-generator` or a run's `folds/<fold>/generator`).
        repo: The Hub repository id, `<user or organization>/<name>`.
        private: Create the repository as private.
        token: A Hub token (default: the one `huggingface-cli login` stored, or `HF_TOKEN`).
    """
    from huggingface_hub import HfApi

    from .card import write_readme
    from .generation import Generator

    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise ValueError(f"--repo {repo!r} is not a Hub repository id of the form <user or organization>/<name>")
    loaded = Generator(Path(generator))  # refuses anything that is not a complete, loadable generator
    write_readme(loaded.directory, loaded.card)
    api = HfApi(token=token)
    api.create_repo(repo_id=repo, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(loaded.directory), repo_id=repo, repo_type="model",
                             allow_patterns=SHARED_FILES, commit_message="Upload a degaml generator")
    print(f"pushed {loaded.directory} to {getattr(info, 'commit_url', repo)}")
