"""`report/summary.json`: the report's figures as data (each track's methods, averages and verdict lines, the
recovered shares and comparisons per domain, the missing evaluations and the stage timings), one typed record
with its save and load, so that readers (the `report` command, tests) do not index it by string keys."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ...config import from_dict
from ...io import atomic_write_text, read_json_object
from ..records import StageTimings

SUMMARY_FILE = "summary.json"


@dataclass
class TrackSummary:
    methods: list[str]
    verdicts: list[str]
    """The track anchor's paired differences from every other method, as the report's lines."""
    averages: dict[str, float] = field(default_factory=dict)
    """{method: task-averaged accuracy (0-1)}; none for the ceilings."""


@dataclass
class DomainSummary:
    tasks: list[str]
    majority_rates: dict[str, float]
    tracks: dict[str, TrackSummary]
    recovered_share: dict[str, list[str]] = field(default_factory=dict)
    """{floor (base, union): the recovered-share table's rows}, where the run has the target-finetuned ceiling."""
    generated_minus: list[str] = field(default_factory=list)
    retrieval_minus: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str) -> DomainSummary:
        tracks = record.get("tracks")
        if not isinstance(tracks, dict):
            raise ValueError(f"{where}: a domain's summary needs its tracks")
        rebuilt = {name: from_dict(TrackSummary, track, f"{where}: tracks: {name}") for name, track in tracks.items()}
        return replace(from_dict(cls, {**record, "tracks": {}}, where), tracks=rebuilt)


@dataclass
class ReportSummary:
    header: str
    domains: dict[str, DomainSummary]
    missing: list[str]
    """The run's evaluations that are not there yet (the report leaves them out)."""
    timings: dict[str, StageTimings] = field(default_factory=dict)
    """{seed directory: its stage timings}."""

    def save(self, path: Path) -> Path:
        return atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> ReportSummary:
        record = read_json_object(path, "report summary")
        where = str(path)
        domains = {name: DomainSummary.from_dict(entry, f"{where}: domains: {name}")
                   for name, entry in (record.get("domains") or {}).items()}
        timings = {seed: from_dict(StageTimings, entry, f"{where}: timings: {seed}")
                   for seed, entry in (record.get("timings") or {}).items()}
        return replace(from_dict(cls, {**record, "domains": {}, "timings": {}}, where), domains=domains,
                       timings=timings)
