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


def cache_root() -> Path:
    """Where converted models, prompt embeddings and extracted data live: `$DEGAML_CACHE`, else
    `~/.cache/degaml`."""
    return Path(os.environ.get("DEGAML_CACHE", Path.home() / ".cache" / "degaml"))


KEY_NEUTRAL = {"answer_format": "loglikelihood", "start": "", "choice_options": 0}
"""Settings added after caches were keyed, at the value that does what was done before they existed."""


def key_fields(config: Any) -> dict[str, Any]:
    """`asdict(config)` for a cache key, without the settings of `KEY_NEUTRAL` at their neutral value: adding
    such a setting leaves every cache made before it valid, and any other value keys apart."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(config).items() if KEY_NEUTRAL.get(k, ...) != v}


def link_copy(source: Path, dest: Path, marker: str) -> None:
    """The finished files of `source` at `dest`, hard-linked (copied across file systems), the `marker` file
    (whose presence says the folder is complete) last, so that an interrupted copy is not complete. Hidden
    temporaries and `resume.pt` stay behind."""
    files = [p for p in sorted(source.rglob("*"))
             if p.is_file() and not p.name.startswith(".") and p.name not in (marker, "resume.pt")]
    for path in [*files, source / marker]:
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def read_json_object(path: str | Path, what: str = "JSON record") -> dict[str, Any]:
    """The JSON object in `path`, refused in one line naming the file when it is unreadable or not an object."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a {what} is a JSON object, found {type(record).__name__}")
    return record


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
        "data_packages": data_provenance(),
    }


def data_provenance() -> dict[str, Any]:
    """The pinned data and weight packages installed, and the files of them read so far in this process with
    their sha256 (each checked against the recorded one when it was read)."""
    from .assets import checked_files, installed_versions

    return {"installed": installed_versions(), "read": checked_files()}


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
    """Another process holds a run directory's or an output's lock."""


def check_output_path(out: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output directory that is a regular file or lies under one."""
    out = Path(out)
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            where = "is" if path == out else f"lies under {path}, which is"
            raise ValueError(f"{flag} {out} {where} a file, not a directory; choose another {flag}")
    return out


@contextmanager
def _held(lock_path: Path, what: Path) -> Iterator[None]:
    """Hold the OS-level lock `lock_path` (released when the process exits, even by SIGKILL; `filelock` does
    the same on every platform) for the block, or refuse at once, naming the holder's pid."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path), timeout=0)
    owner = lock_path.with_name(lock_path.name + ".pid")
    try:
        lock.acquire()
    except Timeout:
        holder = owner.read_text().strip() if owner.is_file() else "another process"
        raise DirectoryBusyError(f"{what} is in use by {holder} (lock {lock_path}); wait for it to finish or "
                                 "use another output directory") from None
    try:
        owner.write_text(f"pid {os.getpid()}\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


@contextmanager
def exclusive_directory(directory: str | Path) -> Iterator[Path]:
    """Hold `<directory>/.lock` for the block: a second process writing into the same directory (a run, one
    task's trajectory) is refused instead of interleaving its writes; the directory is resumable state."""
    directory = check_output_path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _held(directory / ".lock", directory):
        yield directory


@contextmanager
def exclusive_output(out: str | Path) -> Iterator[Path]:
    """Hold `<parent>/.<name>.lock` for the block: for an output a command writes (an evaluation, a generator,
    an adapter directory replaced whole when complete), which then appears only with its contents."""
    out = check_output_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _held(out.parent / f".{out.name}.lock", out):
        yield out
