"""`degaml publish`: what `degaml report` reads of a run, copied into a small folder that outlives the machine
(committed under `results/`), with the per-item predictions, as HELM and lm-evaluation-harness's
`--log_samples` keep them beside every score.

A published folder has the run's layout, less everything a model would be needed for: `experiment.yaml`
(the resolved settings), `precision.json`, and per seed `timings.json`, each fold's policy reward rows
(`folds/<fold>/rewards/rewards.jsonl`) and, per target and method, `cost.json` and `eval*/results.json` (the
scores, the per-item predictions with each option's log-likelihood, the config, the CPU kind and the dtype);
`data_files.json`, every data file the evaluations read with its package version and sha256. `provenance.json`
says where each part came from (the commit, the machine, when). `degaml report <folder>` rebuilds every table
and interval from it alone.

A study too long for one session runs in parts (seeds, or groups of targets) with the same settings, each
published into the same folder: the parts merge, and the report covers their union.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import yaml

from ..config import dump_yaml
from ..io import (
    RunMetadata,
    atomic_write_json,
    atomic_write_text,
    claim_directory,
    package_versions,
    read_json_object,
)
from .experiment import PLACE_SETTINGS, SETTINGS_FILE, Experiment
from .layout import PRECISION_FILE, seed_runs
from .records import StageTimings

PROVENANCE_FILE = "provenance.json"
MERGED_KEYS = ("seeds", "heldout", "out_of_domain")
"""Settings in which the parts of one study may differ: the report covers the union."""


def _comparable(settings: dict) -> dict:
    """The settings without what parts of one study may differ in."""
    tasks = {k: v for k, v in settings.get("tasks", {}).items() if k not in MERGED_KEYS}
    return {**{k: v for k, v in settings.items() if k not in ("seeds", "name")}, "tasks": tasks}


def _merged_settings(old: dict, new: dict, out: Path) -> dict:
    if _comparable(old) != _comparable(new):
        differ = sorted(k for k in {**_comparable(old), **_comparable(new)}
                        if _comparable(old).get(k) != _comparable(new).get(k))
        raise ValueError(f"{out} holds a part of another experiment ({', '.join(differ)} differ); publish into "
                         "another folder")
    merged = dict(old)
    merged["seeds"] = sorted(set(old["seeds"]) | set(new["seeds"]))
    merged["tasks"] = dict(old["tasks"])
    for key in ("heldout", "out_of_domain"):
        merged["tasks"][key] = list(dict.fromkeys([*old["tasks"].get(key, []), *new["tasks"].get(key, [])]))
    return merged


DATA_FILES = "data_files.json"
"""At a published folder's top: every data file its evaluations read, with its package version and sha256, once
(each results.json names it instead of repeating the same hundreds of hashes)."""


def _compact(path: Path, data_files: dict, metas: list[RunMetadata] | None = None) -> str:
    """A results.json without indentation, its data files' hashes moved into `data_files` ({package: {"version",
    "files"}}) and replaced by a pointer to DATA_FILES; its run metadata is appended to `metas` (one read of the
    file serves both)."""
    record = read_json_object(path, "evaluation")
    meta = _metadata(record, path)
    if meta is not None and metas is not None:
        metas.append(meta)
    read = meta.data_packages.read if meta and meta.data_packages else {}
    if read and all(isinstance(entry, dict) for entry in read.values()):  # not a published file taken back
        for dist, entry in read.items():
            data_files.setdefault(dist, {"version": entry["version"], "files": {}})["files"].update(entry["files"])
        record["meta"]["data_packages"]["read"] = {dist: f"{len(entry['files'])} files, in {DATA_FILES}"
                                                   for dist, entry in read.items()}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def _metadata(record: dict, path: Path) -> RunMetadata | None:
    """A results.json's run metadata (None in one written before it was kept)."""
    return RunMetadata.from_dict(record["meta"], f"{path}: meta") if "meta" in record else None


def _one(values: set[str], what: str) -> str:
    return values.pop() if len(values) == 1 else (f"several {what}: {sorted(values)}" if values else "unknown")


def _publish_rewards(runs: list, run_dir: Path, out: Path) -> None:
    """Each fold's policy reward rows (what the policy learnt from); a part adds the rows the folder lacks."""
    for seed_run in runs:
        for path in sorted(seed_run.root.glob("folds/*/rewards/rewards.jsonl")):
            target = out / path.relative_to(run_dir)
            old = target.read_text(encoding="utf-8").splitlines() if target.is_file() else []
            lines = list(dict.fromkeys([*old, *path.read_text(encoding="utf-8").splitlines()]))
            atomic_write_text(target, "".join(f"{line}\n" for line in lines if line.strip()))


def publish(run_dir: Path, out: Path, seeds: list[int] | None = None, commit: str | None = None) -> None:
    """Copy what `degaml report` reads of a run into a folder to commit, such as results/<name>.

    The settings, costs, stage timings and per-item predictions; parts of one study published into the same
    folder merge.

    Args:
        run_dir: A `degaml run` directory, or a `degaml headroom` one (its settings, per-item predictions and
            table, without the adapters).
        out: The published folder (created, or merged into when it holds another part of the same experiment).
        seeds: Publish only these seeds (default: all the run has finished).
        commit: The commit the run was made at, for a run that predates recording it (its results.json files
            say which code made them since).
    """
    from .headroom import SETTINGS_FILE as HEADROOM_SETTINGS
    from .headroom import is_headroom_directory, publish_headroom

    if is_headroom_directory(Path(run_dir)):
        out = claim_directory(out, (HEADROOM_SETTINGS,))
        data_files = read_json_object(out / DATA_FILES, "data files") if (out / DATA_FILES).is_file() else {}
        publish_headroom(Path(run_dir), out, lambda path: _compact(path, data_files))
        atomic_write_json(out / DATA_FILES, data_files)
        return
    run_dir, out = Path(run_dir), claim_directory(out, (SETTINGS_FILE,))
    settings = Experiment.load(run_dir)
    new = yaml.safe_load((run_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
    runs = [r for r in seed_runs(run_dir) if seeds is None or r.seed in seeds]
    files = [(r, p) for r in runs for p in sorted(r.root.glob("targets/*/*/eval*/results.json"))]
    if not files:
        raise FileNotFoundError(f"{run_dir}: no finished evaluation to publish"
                                + (f" for seeds {seeds}" if seeds is not None else ""))
    new["seeds"] = [r.seed for r in runs]
    merged = _merged_settings(yaml.safe_load((out / SETTINGS_FILE).read_text(encoding="utf-8")), new, out) \
        if (out / SETTINGS_FILE).is_file() else new
    data_files = read_json_object(out / DATA_FILES, "data files") if (out / DATA_FILES).is_file() else {}
    metas: list[RunMetadata] = []
    compact = {path: _compact(path, data_files, metas) for _, path in files}
    # Every file a part adds must be new there: two parts that scored the same seed, target and method clash.
    for seed_run, path in files:
        target = out / path.relative_to(run_dir)
        if target.is_file() and target.read_text(encoding="utf-8") != compact[path]:
            raise ValueError(f"{target} already holds another part's evaluation of seed {seed_run.seed}, "
                             f"{path.parent.parent.parent.name}, {path.parent.parent.name}; publish into another folder")
    for _, path in files:
        atomic_write_text(out / path.relative_to(run_dir), compact[path])
        cost = path.parent.parent / "cost.json"
        if cost.is_file():
            atomic_write_text(out / cost.relative_to(run_dir), cost.read_text(encoding="utf-8"))
    atomic_write_json(out / DATA_FILES, {d: {"version": e["version"], "files": dict(sorted(e["files"].items()))}
                                         for d, e in sorted(data_files.items())})
    provenance = read_json_object(out / PROVENANCE_FILE, "provenance") if (out / PROVENANCE_FILE).is_file() \
        else {"parts": []}
    part = {"run": run_dir.name, "seeds": new["seeds"], "targets": settings.targets}
    again = [p for p in provenance["parts"] if {k: p.get(k) for k in part} == part]  # the same part published again
    for seed_run in runs if not again else []:
        if seed_run.timings.is_file():  # a seed published in parts (target groups) adds up the parts' stage times
            mine, theirs = StageTimings.load(seed_run.timings), StageTimings.load(out / seed_run.root.name / "timings.json")
            for stage, seconds in mine.seconds.items():
                theirs.add(stage, seconds, mine.peak_rss_mb.get(stage, 0.0))
            theirs.save(out / seed_run.root.name / "timings.json")
    _publish_rewards(runs, run_dir, out)
    if (run_dir / PRECISION_FILE).is_file():
        atomic_write_text(out / PRECISION_FILE, (run_dir / PRECISION_FILE).read_text(encoding="utf-8"))
    atomic_write_text(out / SETTINGS_FILE, dump_yaml(merged))
    provenance["parts"] = [p for p in provenance["parts"] if p not in again] + [{
        **part, "commit": _one({m.code for m in metas if m.code}, "commits") if any(m.code for m in metas)
        else (f"{commit} (given when published)" if commit else "not recorded by the run (it predates the record)"),
        "published": datetime.now(UTC).isoformat(timespec="seconds"),
        "degaml": package_versions()["degaml"], "platform": platform.platform(),
        "cpu": _one({m.compute.cpu for m in metas if m.compute}, "CPU kinds"),
        "dtype": _one({m.compute.dtype for m in metas if m.compute}, "dtypes"),
        "data_packages": next((m.data_packages.installed for m in metas if m.data_packages), {}),
        "evaluations": len(files)}]
    atomic_write_json(out / PROVENANCE_FILE, provenance)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and "report" not in p.parts)
    print(f"published {len(files)} evaluations of {run_dir} (seeds {new['seeds']}) into {out}: {size / 1e6:.1f} MB; "
          f"`degaml report {out}` rebuilds the tables from it alone")


def take_published(exp: Experiment) -> list[int]:
    """The seeds of `exp` that `exp.published` holds whole (every evaluation the evaluation stage writes for every
    target), copied into `exp.out`: their per-item predictions, costs and stage times. A published folder of
    another experiment (other settings, or without these targets) is refused naming what differs."""
    from ..config import to_dict
    from ..data import task_label
    from .evaluation_stage import scored_methods
    from .layout import CALIBRATED, seed_run_in

    source = Path(exp.published)
    published = Experiment.load(source)
    mine, theirs = to_dict(exp), to_dict(published)
    changed = sorted(k for k in mine if k not in (*PLACE_SETTINGS, "name", "seeds", "tasks") and mine[k] != theirs.get(k))
    changed += [f"tasks.{k}" for k in ("meta_training", "train", "reward") if mine["tasks"][k] != theirs["tasks"][k]]
    if set(exp.targets) - set(published.targets):
        changed.append(f"targets ({sorted(set(exp.targets) - set(published.targets))} are not published)")
    if changed:
        raise ValueError(f"--published {source}: another experiment's results ({', '.join(changed)} differ)")
    protocol = exp.evaluation.protocols[0]
    methods = [m for m in scored_methods(exp) if exp.evaluation.scores(m, protocol)]
    methods += [f"{m}{CALIBRATED}" for m in exp.evaluation.calibrated]
    targets, taken = [task_label(t) for t in exp.targets], []
    for seed in exp.seeds:
        there, here = seed_run_in(source, seed), seed_run_in(exp.out, seed)
        if not all(there.method(t, m).results_for(protocol).is_file() for t in targets for m in methods):
            continue
        files = [p for t in targets for p in sorted((there.root / "targets" / t).rglob("*.json"))]
        for path in [*files, there.timings] if there.timings.is_file() else files:
            target = here.root / path.relative_to(there.root)
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(target, path.read_text(encoding="utf-8"))
        taken.append(seed)
    return taken
