"""A degaml partition handed to lm-evaluation-harness: the exported tasks make lm-eval build the very requests
degaml scores, and lm-eval's own HFLM then makes the very predictions `degaml evaluate` makes (tiny model)."""

import json

import pytest

from degaml.cli import main
from degaml.data import MultipleChoiceItem
from degaml.evaluation.lm_eval_export import request_shape, write_task

lm_eval = pytest.importorskip("lm_eval")  # in the test extra; an install without it skips, not fails


def _requests(include: str, task: str):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include)
    loaded = manager.load_task_or_group([task])[task]
    loaded.build_all_requests(limit=None, rank=0, world_size=1)
    return loaded


def test_both_request_shapes_give_lm_eval_degamls_requests(tmp_path):
    cloze = [MultipleChoiceItem.cloze(f"c{i}", "q", f"Question: {i} + 1?\nAnswer:", [str(i + 1), str(i + 2)], 0)
             for i in range(3)]
    partial = [MultipleChoiceItem(id=f"w{i}", question="q", choices=("Ann", "Bob"), gold=i % 2,
                                  contexts=(f"{i}: Ann said", f"{i}: Bob said"), continuations=(" hello.", " hello."))
               for i in range(3)]
    assert request_shape("c", cloze) == "continuations" and request_shape("w", partial) == "contexts"
    for name, items in (("c", cloze), ("w", partial)):
        write_task(tmp_path, tmp_path, name, items)
        task = _requests(str(tmp_path), f"degaml_{name}")
        built = {}
        for instance in task.instances:
            built.setdefault(instance.doc["id"], []).append(instance.arguments)
        for it in items:
            assert built[it.id] == list(zip(it.contexts, it.continuations))
        golds = [task.doc_to_text(doc) if name == "w" else task.doc_to_target(doc) for doc in task.eval_docs]
        assert [int(g) for g in golds] == [it.gold for it in items]
    mixed = [cloze[0], partial[0]]
    with pytest.raises(ValueError, match="mix request shapes"):
        request_shape("m", mixed)


def test_lm_eval_scores_the_exported_partition_as_degaml_does(workspace, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task = workspace["tasks"][0]
    main(["export-lm-eval", "--data.tasks", task, "--data.split", "test", "--data.limit", "8",
          "--out", str(tmp_path / "tasks")])
    main(["evaluate", "--model.name", workspace["model"], "--data.tasks", task, "--data.split", "test",
          "--data.limit", "8", "--model.dtype", "float32", "--model.device", "cpu", "--out", str(tmp_path / "eval"),
          "--progress", "false"])
    ours = json.loads((tmp_path / "eval" / "results.json").read_text())["results"][0]
    harness = HFLM(pretrained=workspace["model"], dtype="float32", batch_size=4, device="cpu")
    results = simple_evaluate(model=harness, tasks=["degaml_colors"], task_manager=TaskManager(
        include_path=str(tmp_path / "tasks")), log_samples=True)
    samples = results["samples"]["degaml_colors"]
    assert len(samples) == len(ours["predictions"]) == 8
    theirs = {s["doc"]["id"]: [float(r[0][0]) for r in s["resps"]] for s in samples}
    for p in ours["predictions"]:
        assert p["logprobs"] == pytest.approx(theirs[p["id"]], abs=1e-4)
    assert results["results"]["degaml_colors"]["acc,none"] == pytest.approx(ours["metrics"]["acc"])
