"""Artifacts on disk: atomic writes and the provenance recorded with every result."""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

_TRACKED_PACKAGES = ("degaml", "torch", "transformers", "peft", "datasets", "accelerate", "safetensors")


def cache_root() -> Path:
    """Where converted models, prompt embeddings and extracted data live: `$DEGAML_CACHE`, else
    `~/.cache/degaml`."""
    return Path(os.environ.get("DEGAML_CACHE", Path.home() / ".cache" / "degaml"))


KEY_NEUTRAL = {"answer_format": "loglikelihood", "start": "", "choice_options": 0, "max_length": None}
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
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the file is written as open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


OUTPUT_MARKER = ".degaml-output"
"""Written into every directory degaml replaces whole: only a directory that carries it (or an empty one) is
ever replaced, so a user's folder named as --out is refused instead of deleted."""


class ForeignDirectoryError(ValueError):
    """An output directory holds files that degaml did not write."""


def _foreign(path: Path, own: tuple[str, ...] = ()) -> bool:
    """A directory that holds files and neither `OUTPUT_MARKER` nor any of `own` (glob patterns)."""
    return path.is_dir() and not (path / OUTPUT_MARKER).is_file() and any(path.iterdir()) \
        and not any(next(path.glob(pattern), None) for pattern in own)


def check_replaceable(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an existing directory that is not empty and does not carry `OUTPUT_MARKER`."""
    path = Path(path)
    if _foreign(path):
        raise ForeignDirectoryError(f"{flag} {path} is a folder that degaml did not write (it holds other files and "
                                    f"no {OUTPUT_MARKER}), and the output replaces its folder whole; choose a new or "
                                    "empty folder")
    return path


def claim_directory(path: str | Path, own: tuple[str, ...], flag: str = "--out") -> Path:
    """A directory a command writes into and keeps (a run, an evaluation, trajectories, a generator, a policy):
    refused, before any work, when it holds files and neither `OUTPUT_MARKER` nor one of the command's own
    records (`own`: glob patterns, e.g. "experiment.yaml" or "*/manifest.json"), since the command could
    overwrite its files. Nothing is created: a command refused later leaves nothing behind."""
    path = check_output_path(path, flag)
    if _foreign(path, own):
        raise ForeignDirectoryError(f"{flag} {path} is a folder that degaml did not write (it holds other files and "
                                    f"no {OUTPUT_MARKER}), and this command writes its files into it; choose a new or "
                                    "empty folder")
    return path


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` only if the block completes; `path` is replaced only
    when it is empty or an earlier output of degaml (`check_replaceable`)."""
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        (tmp / OUTPUT_MARKER).write_text("written by degaml; the folder is replaced whole when written again\n")
        yield tmp
        if path.exists():
            check_replaceable(path)  # again: something may have appeared there while the block ran
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


@dataclass(frozen=True)
class Compute:
    """Where and in what dtype a model ran, and why (`LoadedModel.compute()`)."""

    device: str
    dtype: str
    reason: str
    cpu: str


@dataclass(frozen=True)
class DataProvenance:
    """The pinned data and weight packages installed ({distribution: version}) and the files of them read
    ({distribution: {"version", "files": {file: sha256}}}, or a published folder's pointer to its data files)."""

    installed: dict[str, Any] = field(default_factory=dict)
    read: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunMetadata:
    """Who, when and with what: stored beside every result (a results.json's `meta`, a trajectory manifest's,
    a baseline's record) so it can be reproduced."""

    seed: int
    compute: Compute | None = None
    """Absent where no model ran."""
    created: str = ""
    python: str = ""
    platform: str = ""
    versions: dict[str, str | None] = field(default_factory=dict)
    code: str = ""
    """The git commit of the degaml source (`code_commit`); empty in records written before it was kept."""
    data_packages: DataProvenance | None = None

    @classmethod
    def from_dict(cls, record: Any, where: str) -> RunMetadata:
        """The metadata in `record`, refused in one line naming `where` and the field at fault."""
        known = {f.name for f in fields(cls)}
        if not isinstance(record, dict) or not known >= set(record):
            raise ValueError(f"{where}: not run metadata (unknown fields "
                             f"{sorted(set(record) - known) if isinstance(record, dict) else record!r})")
        try:
            compute = record.get("compute")
            data = record.get("data_packages")
            return cls(**{**record, "compute": Compute(**compute) if compute is not None else None,
                          "data_packages": DataProvenance(**data) if data is not None else None})
        except TypeError as e:
            raise ValueError(f"{where}: not run metadata ({e})") from None


def run_metadata(seed: int, compute: dict[str, Any] | None = None) -> dict[str, Any]:
    """`RunMetadata` of this process, as the dict stored beside a result. `compute` is the model's
    `LoadedModel.compute()`: device, dtype and the reason for it, CPU kind."""
    record = asdict(RunMetadata(seed=seed, compute=Compute(**compute) if compute is not None else None,
                                created=datetime.now(UTC).isoformat(timespec="seconds"),
                                python=platform.python_version(), platform=platform.platform(),
                                versions=package_versions(), code=code_commit(),
                                data_packages=DataProvenance(**data_provenance())))
    return {k: v for k, v in record.items() if k != "compute" or v is not None}


@functools.cache
def code_commit() -> str:
    """The git commit of the degaml source that is running, when it runs from a checkout (`+ changes` when the
    checkout's tracked files differ from it); `installed` otherwise."""
    import subprocess

    source = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "--",
                                "degaml"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "installed"
    if head.returncode != 0 or not (source / ".git").exists():
        return "installed"
    return head.stdout.strip() + (" + changes" if dirty.stdout.strip() else "")


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
    """Refuse, before any work, an output directory that is a regular file or lies under one, and the current
    directory, one of its parents, the home directory or the root (an output is written into or replaces its
    folder)."""
    out = Path(out)
    resolved, here = out.expanduser().resolve(), Path.cwd().resolve()
    if resolved in (here, *here.parents, Path.home().resolve()):
        what = ("the root directory" if resolved == Path(resolved.anchor) else "the home directory"
                if resolved == Path.home().resolve() else "the current directory" if resolved == here
                else "a parent of the current directory")
        raise ValueError(f"{flag} {out} is {what}; name a folder of its own, such as {flag} out/{resolved.name or 'x'}")
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
def exclusive_output(out: str | Path, replaced: bool = True) -> Iterator[Path]:
    """Hold a lock on `out` for the block: for an output a command writes (an evaluation, a generator, an
    adapter directory replaced whole when complete), which then appears only with its contents. The lock file
    lives in the cache (`<cache>/locks/`), never beside the user's output. `replaced`: the output replaces its
    folder whole, so a folder degaml did not write is refused first."""
    import hashlib

    out = check_output_path(out)
    if replaced:
        check_replaceable(out)
    locks = cache_root() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(out.expanduser().resolve()).encode()).hexdigest()[:24]
    with _held(locks / f"{key}.lock", out):
        yield out
