"""Artifacts on disk: atomic writes and the provenance recorded with every result."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

_TRACKED_PACKAGES = ("degaml", "torch", "transformers", "peft", "datasets", "accelerate", "safetensors")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary sibling, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` only if the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_metadata(seed: int, compute: dict[str, Any] | None = None) -> dict[str, Any]:
    """Who, when and with what: stored beside every result so it can be reproduced. `compute` is the model's
    `LoadedModel.compute()`: device, dtype and the reason for it, CPU kind."""
    return {
        "seed": seed,
        **({"compute": compute} if compute is not None else {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
    }


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Remove what killed writers left under `directory`: the `.<name>.<...>.tmp` files and directories that
    atomic writes rename into place when complete. Safe only while holding the directory's lock."""
    found = sorted((p for p in Path(directory).rglob(".*.tmp")), key=lambda p: len(p.parts))
    removed = []
    for path in found:
        if not path.exists():  # inside a temporary directory removed a moment ago
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


class DirectoryBusyError(ValueError):
    """Another process holds a run directory's lock."""


@contextmanager
def exclusive_directory(directory: str | Path) -> Iterator[Path]:
    """Hold `<directory>/.lock` (an OS-level lock, released when the process exits, even by SIGKILL) for the
    block: a second process on the same directory is refused instead of interleaving its writes."""
    import fcntl

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DirectoryBusyError(f"{directory} is in use by {holder} (lock {path}); wait for it to finish or "
                                 "use another output directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    try:
        yield directory
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
