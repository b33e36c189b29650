"""The zero-label floors a generated adapter must beat, built from the generator's own training data: the
mean of the training tasks' adapters (what a collapsed generator produces) and the retrieval mixture of
them (degaml/generator/retrieval.py). Each task's adapter is the element-wise mean of every saved
checkpoint of its trajectories."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..models import LoraState
from .dataset import average_states
from .trajectories import TrajectoryManifest, load_checkpoint


def trajectory_manifests(trajectories: Path, task: str) -> list[TrajectoryManifest]:
    """The manifests of `task`'s trajectories (one per collection seed) under `trajectories`."""
    root = Path(trajectories)
    found = [TrajectoryManifest.load(d) for d in sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    return [m for m in found if m.task == task]


def task_adapters(trajectories: Path, tasks: Sequence[str]) -> dict[str, LoraState]:
    """{task: its own adapter} for `tasks`, pooling every collection seed of a task."""
    by_task: dict[str, list[LoraState]] = {}
    root = Path(trajectories)
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        manifest = TrajectoryManifest.load(directory)
        if manifest.task in tasks:
            by_task.setdefault(manifest.task, []).extend(
                load_checkpoint(path) for path in manifest.checkpoint_paths(directory))
    missing = [t for t in tasks if not by_task.get(t)]
    if missing:
        raise FileNotFoundError(f"{trajectories}: no trajectory checkpoints for task(s) {missing}")
    return {task: average_states(by_task[task]) for task in tasks}

