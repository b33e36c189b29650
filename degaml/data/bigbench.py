"""BIG-bench's JSON tasks as meta-training tasks, read from the data files of the registry package
`bigbench==1.0.0` (Apache-2.0) and nothing else: its sdist is downloaded without dependencies, its sha256
checked against `SDIST_SHA256`, and only `bigbench/benchmark_tasks/<task>[/<subtask>]/task.json` are read.
The package is never installed and none of its code runs.

`prepare_bigbench` (`degaml prepare-data`, run by scripts/install.sh) turns each task into a local task file
in the data cache, `<cache>/bigbench/tasks/bigbench_<task>[__<subtask>].jsonl`, with a manifest that records
every task's provenance (the JSON file it came from, its keywords, items kept and dropped, and why). The rules:

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


def task_files(root: Path | None = None) -> dict[str, Path]:
    """{registered name: its task file} of a prepared cache; empty when `degaml prepare-data` has not run."""
    root = root or cache_dir()
    manifest = root / MANIFEST
    if not manifest.is_file():
        return {}
    tasks = json.loads(manifest.read_text(encoding="utf-8"))["tasks"]
    return {name: root / "tasks" / f"{name}.jsonl" for name in tasks}


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", text.lower())).strip()


@dataclass(frozen=True)
class TaskJson:
    path: str
    """`<task>/task.json` or `<task>/<subtask>/task.json`, under benchmark_tasks/."""
    data: dict

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


def read_task_jsons(sdist: Path) -> Iterator[TaskJson]:
    """Every benchmark_tasks/**/task.json of the sdist (no other member is read)."""
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            marker = "/bigbench/benchmark_tasks/"
            if not (member.isfile() and member.name.endswith("/task.json") and marker in member.name):
                continue
            path = member.name.split(marker, 1)[1]
            try:
                data = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{sdist}: {member.name} is not valid JSON ({e})") from None
            yield TaskJson(path, data)


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
        candidates[task.name] = (TaskJson(task.path, {k: v for k, v in task.data.items() if k != "examples"}), clean,
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


def download_sdist(directory: Path) -> Path:
    """`pip download --no-deps` of the pinned sdist into `directory` (the registry is the only network use)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", SDIST,
                    "-d", str(directory)], check=True)
    found = sorted(directory.glob("bigbench-*.tar.gz"))
    if not found:
        raise FileNotFoundError(f"pip download {SDIST} left no sdist in {directory}")
    return found[0]


def prepare_bigbench(targets: dict[str, Iterable], sdist: Path | None = None, out: Path | None = None,
                     expected_sha256: str = SDIST_SHA256) -> Path:
    """Extract the selected tasks into `out` (default: the data cache) once; returns `out`. `targets`: {name:
    items} of the tasks no BIG-bench task may duplicate (`degaml prepare-data`: every in- and out-of-domain
    task)."""
    from ..io import atomic_directory, atomic_write_json

    out = Path(out or cache_dir())
    if (out / MANIFEST).is_file():
        return out
    with tempfile.TemporaryDirectory() as download:
        sdist = Path(sdist) if sdist is not None else download_sdist(Path(download))
        verify_sdist(sdist, expected_sha256)
        kept, excluded = select(read_task_jsons(sdist), target_questions(targets))
    with atomic_directory(out) as tmp:
        (tmp / "tasks").mkdir()
        for name, (_, records, _) in kept.items():
            (tmp / "tasks" / f"{name}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        atomic_write_json(tmp / MANIFEST, {
            "source": SDIST, "sha256": expected_sha256, "licence": "Apache-2.0", "targets_checked": list(targets),
            "rules": {"min_items": MIN_ITEMS, "max_items": MAX_ITEMS, "max_options": MAX_OPTIONS, "max_subtasks": MAX_SUBTASKS,
                      "overlap_min_chars": OVERLAP_MIN_CHARS, "overlap_task_share": OVERLAP_TASK_SHARE,
                      "excluded_by_name": EXCLUDED},
            "tasks": {name: {"file": f"bigbench/benchmark_tasks/{task.path}", "items": len(records),
                             "keywords": task.data.get("keywords", []), "dropped": dropped,
                             "description": str(task.data.get("description", ""))[:300]}
                      for name, (task, records, dropped) in kept.items()},
            "excluded": excluded})
    return out

