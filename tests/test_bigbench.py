"""BIG-bench's task.json files become meta-training task files by the documented rules, from a verified sdist,
with every task's provenance recorded; a made-up sdist stands in for the 358 MB one."""

import hashlib
import io
import json
import tarfile

import pytest

from degaml.data import bigbench
from degaml.data.files import read_task_file

TARGET_QUESTION = "Which planet in our solar system is known as the red planet by astronomers?"


def _example(i: int, options: int = 3, tie: bool = False, text: str | None = None) -> dict:
    scores = {f"option {k} of {i}": 1.0 if k == 0 else 0.0 for k in range(options)}
    if tie:
        scores[f"option 1 of {i}"] = 1.0
    return {"input": text or f"question number {i}", "target_scores": scores}


def _sdist(tmp_path, tasks: dict[str, dict]) -> tuple:
    path = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in {**tasks, "setup.py": None}.items():
            raw = json.dumps(data).encode() if data is not None else b"print('never run')"
            name = f"bigbench-1.0.0/bigbench/benchmark_tasks/{rel}" if data is not None else f"bigbench-1.0.0/{rel}"
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "target.jsonl"
    path.write_text(json.dumps({"question": TARGET_QUESTION, "choices": ["Mars", "Venus"], "gold": 0}) + "\n"
                    + json.dumps({"question": "short one", "choices": ["a", "b"], "gold": 0}) + "\n")
    return {"target": read_task_file(path)}


def test_tasks_are_kept_and_excluded_by_the_documented_rules(tmp_path, target):
    tasks = {
        "good/task.json": {"task_prefix": "Answer the riddle.", "keywords": ["logic"],
                           "examples": [_example(i) for i in range(55)] + [_example(90, options=12), _example(91, tie=True),
                                                                          {"input": "free text", "target": "x"}]},
        "small/task.json": {"examples": [_example(i) for i in range(30)]},
        "social_iqa/task.json": {"examples": [_example(i) for i in range(80)]},
        "copied/task.json": {"examples": [_example(i, text=f"Q{i}: {TARGET_QUESTION}") for i in range(20)]
                             + [_example(i) for i in range(20, 80)]},
        "family/task.json": {"subtasks": ["a", "b", "c", "d", "e"], "examples": []},
        **{f"family/{s}/task.json": {"examples": [_example(i) for i in range(60)]} for s in "edcba"},
    }
    sdist, sha = _sdist(tmp_path, tasks)
    out = bigbench.prepare_bigbench(target, sdist, tmp_path / "cache", expected_sha256=sha)
    manifest = json.loads((out / bigbench.MANIFEST).read_text())
    assert sorted(manifest["tasks"]) == ["bigbench_family__a", "bigbench_family__b", "bigbench_family__c",
                                         "bigbench_family__d", "bigbench_good"]
    good = manifest["tasks"]["bigbench_good"]
    assert good["items"] == 55 and good["file"] == "bigbench/benchmark_tasks/good/task.json"
    assert good["dropped"] == {"too many options": 1, "no single best option": 1, "not multiple choice": 1}
    assert good["keywords"] == ["logic"]
    excluded = manifest["excluded"]
    assert excluded["bigbench_social_iqa"].startswith("SocialIQA")
    assert excluded["bigbench_small"] == "30 multiple-choice items, fewer than 50"
    assert excluded["bigbench_copied"].startswith("20 of 80 items contain a target's question")
    assert excluded["bigbench_family__e"] == "beyond the first 4 subtasks of family"
    assert manifest["sha256"] == sha and manifest["targets_checked"] == ["target"]
    items = read_task_file(out / "tasks" / "bigbench_good.jsonl")
    assert items[0].question == "Answer the riddle.\nquestion number 0" and items[0].gold == 0
    assert len(items[0].choices) == 3
    assert set(bigbench.task_files(out)) == set(manifest["tasks"])


def test_a_few_copied_items_are_dropped_and_recorded(tmp_path, target):
    examples = [_example(i) for i in range(60)] + [_example(99, text=f"Recall: {TARGET_QUESTION} Think.")]
    sdist, sha = _sdist(tmp_path, {"mostly_new/task.json": {"examples": examples}})
    out = bigbench.prepare_bigbench(target, sdist, tmp_path / "cache", expected_sha256=sha)
    task = json.loads((out / bigbench.MANIFEST).read_text())["tasks"]["bigbench_mostly_new"]
    assert task["items"] == 60 and task["dropped"] == {"overlap with targets": {"target": 1}}


def test_an_sdist_whose_hash_is_not_the_pinned_one_is_refused_and_nothing_is_written(tmp_path, target):
    sdist, _ = _sdist(tmp_path, {"good/task.json": {"examples": [_example(i) for i in range(60)]}})
    with pytest.raises(ValueError, match="is not the pinned"):
        bigbench.prepare_bigbench(target, sdist, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_unprepared_bigbench_tasks_say_how_to_prepare_them():
    from degaml.data.tasks import get_task

    with pytest.raises(ValueError, match="`degaml prepare-data`"):
        get_task("bigbench_not_there")
