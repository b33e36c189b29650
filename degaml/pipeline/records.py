"""The records a run's stages write for the report: one class per file, each with its `save` and `load`, so
that no reader indexes another module's JSON by string keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, read_json_object


def _read(cls: type, path: Path, upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON object in `path` (put in today's layout by `upgrade`, for records written before it), refused
    with the file and the field at fault unless it fits `cls`."""
    record = read_json_object(path, f"{cls.__name__} record")
    if upgrade is not None:
        record = upgrade(record)
    known = {f.name for f in fields(cls)}
    unknown = sorted(record.keys() - known)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown} in a {cls.__name__} record; known: {sorted(known)}")
    return record


@dataclass
class MethodCost:
    """`targets/<task>/<method>/cost.json`: what producing one method's output for one target took. Written by
    the stage that made the output, last, so its presence means the output is complete."""

    seconds: float
    """Wall time for this target (the baselines' meta-training, shared by a fold's targets, counted in full)."""
    labelled_target_examples: int
    """Labelled items of the target the method read: its track in the report."""
    ceiling: bool = False
    """A ceiling, not a method of any track: it reads target labels beyond its track's budget (the oracle reads
    validation labels; the target-finetuned adapter, the target's own train labels)."""
    action: str = ""
    """The adaptation applied (generated, DeGAML, oracle)."""
    choice: str = ""
    """DeGAML-k's supervised choice."""
    target_steps: int = 0
    """Optimizer steps taken on the target's labelled examples (the k-label track's budget; DeGAML-k counts every
    fine-tuned candidate's)."""
    meta_train_seconds: float = 0.0
    """The part of `seconds` spent on meta-training (baselines)."""
    validation_scores: dict[str, float] = field(default_factory=dict)
    """The oracle's validation score of every action."""
    peak_rss_mb: float | None = None
    peak_cuda_mb: float | None = None

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> MethodCost:
        record = _read(cls, path)
        try:
            return cls(**record)
        except TypeError as e:
            raise ValueError(f"{path}: not a {cls.__name__} record ({e})") from None


@dataclass
class MetaTraining:
    """`meta.json` beside meta-trained weights (`meta.safetensors`) in a baseline cache, written last: what the
    meta-training took, and the method's own training log (which its targets' adapter records carry)."""

    seconds: float
    tasks: list[str]
    peak_rss_mb: float = 0.0
    steps: int | None = None
    """Optimizer steps, where the record's owner counts them (union-matched)."""
    log: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> MetaTraining:
        record = _read(cls, path, _unflattened)
        try:
            return cls(**record)
        except TypeError as e:
            raise ValueError(f"{path}: not a {cls.__name__} record ({e})") from None

    def as_log(self) -> dict[str, Any]:
        """The entries a baseline's adapter record (degaml.json) carries of its meta-training."""
        return {**self.log, "meta_train_seconds": self.seconds, "meta_tasks": self.tasks,
                "meta_peak_rss_mb": self.peak_rss_mb}


def _unflattened(record: dict[str, Any]) -> dict[str, Any]:
    """A meta-training cache written before `MetaTraining`: the method's log with three `meta_*` entries."""
    if "meta_train_seconds" not in record:
        return record
    log = {k: v for k, v in record.items() if k not in ("meta_train_seconds", "meta_tasks", "meta_peak_rss_mb")}
    return {"seconds": record["meta_train_seconds"], "tasks": record.get("meta_tasks", []),
            "peak_rss_mb": record.get("meta_peak_rss_mb", 0.0), "log": log}


@dataclass
class StageTimings:
    """`seed_<s>/timings.json`: wall seconds of each stage and the process's peak resident memory by the end of
    it (a resumed run adds its seconds and keeps the larger peak)."""

    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float, peak_rss_mb: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.peak_rss_mb[stage] = max(self.peak_rss_mb.get(stage, 0.0), peak_rss_mb)

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> StageTimings:
        """The saved timings, or none yet."""
        return cls(**_read(cls, path)) if Path(path).is_file() else cls()


@dataclass
class RunPrecision:
    """`precision.json`: the dtype the run's model computes in and why (`choose_precision`), written when the run
    first starts. `model.dtype: auto` resolves by machine (bfloat16 where the CPU computes it natively, else
    float32), so a run resumed on another kind of machine would mix artifacts of two dtypes; `check` refuses that."""

    dtype: str
    reason: str

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> RunPrecision:
        return cls(**_read(cls, path))

    def check(self, path: Path) -> None:
        """Record this precision at `path`, or refuse it when the run there was made in another dtype."""
        if not Path(path).is_file():
            self.save(path)
            return
        made = RunPrecision.load(path)
        if made.dtype != self.dtype:
            raise ValueError(f"{path}: this run was made in {made.dtype} ({made.reason}), but here its model runs in "
                             f"{self.dtype} ({self.reason}); resuming would mix artifacts of two dtypes. Resume it on "
                             f"a machine that runs {made.dtype}, or start another --out (pin `model.dtype` in the "
                             "config for a run that moves between machines)")
