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

    with pytest.raises(ValueError, match="`degaml prepare-data --help`"):
        get_task("bigbench_not_there")


def _checkout(root, tasks: dict[str, dict]):
    for rel, data in tasks.items():
        path = root / "bigbench" / "benchmark_tasks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return root


def test_a_checkout_folder_gives_what_the_sdist_gives_with_each_file_hashed(tmp_path, target):
    tasks = {"good/task.json": {"task_prefix": "Answer.", "examples": [_example(i) for i in range(60)]},
             "family/a/task.json": {"examples": [_example(i) for i in range(52)]}}
    sdist, sha = _sdist(tmp_path, tasks)
    from_sdist = bigbench.prepare_bigbench(target, sdist, tmp_path / "a", expected_sha256=sha)
    checkout = _checkout(tmp_path / "checkout", tasks)
    from_folder = bigbench.prepare_bigbench(target, out=tmp_path / "b", source=bigbench.Source("folder", checkout))
    for name in ("bigbench_good", "bigbench_family__a"):
        assert (from_sdist / "tasks" / f"{name}.jsonl").read_text() == (from_folder / "tasks" / f"{name}.jsonl").read_text()
    manifest = json.loads((from_folder / bigbench.MANIFEST).read_text())
    raw = (checkout / "bigbench" / "benchmark_tasks" / "good" / "task.json").read_bytes()
    assert manifest["tasks"]["bigbench_good"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert manifest["kind"] == "folder" and str(checkout) in manifest["source"]
    sdist_manifest = json.loads((from_sdist / bigbench.MANIFEST).read_text())
    assert sdist_manifest["tasks"]["bigbench_good"]["sha256"] == manifest["tasks"]["bigbench_good"]["sha256"]


def test_a_folder_without_benchmark_tasks_is_refused_in_one_line(tmp_path, target):
    with pytest.raises(FileNotFoundError, match="no benchmark_tasks/ folder"):
        bigbench.prepare_bigbench(target, out=tmp_path / "c", source=bigbench.Source("folder", tmp_path))
    assert not (tmp_path / "c").exists()


def test_with_no_source_prepare_data_says_what_the_user_can_do(monkeypatch, tmp_path, capsys):
    """The registry no longer serves the pinned sdist: one line naming the three sources, no traceback."""
    import subprocess

    from degaml.cli import main

    def refused(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found for bigbench==1.0.0\n")

    monkeypatch.setattr(bigbench.subprocess, "run", refused)
    monkeypatch.setenv("DEGAML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bigbench, "target_questions", lambda targets: {})
    monkeypatch.setattr("degaml.data.commands.load_task", lambda name: [])
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare-data"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert "No matching distribution" in err and all(flag in err for flag in ("--sdist", "--folder", "--hub"))
    assert not (tmp_path / "cache").exists()


def test_a_run_naming_unprepared_bigbench_tasks_is_refused_before_writing_anything(tmp_path, capsys):
    from degaml.cli import main

    out = tmp_path / "runs" / "x"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--config", "offline", "--tasks.meta_training", "[bigbench_navigate, sciq]", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "bigbench_navigate" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
