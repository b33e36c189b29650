"""A degaml partition as lm-evaluation-harness tasks: per task a JSONL of the very items degaml scores (the
partition's seeded order, the same limit) and a task YAML that builds the very log-likelihood requests degaml
builds, for `lm_eval --include_path <out> --tasks degaml_<task>`.

Two request shapes, as lm-evaluation-harness's own tasks have them: one context with an answer continuation
per option (`doc_to_text` the context, `doc_to_choice` the continuations), or, for partial scoring
(WinoGrande), one context per option before a shared continuation (lm-evaluation-harness's multiple-input
form: `doc_to_text` the gold index, `doc_to_choice` the contexts). Continuations carry their own leading
space, so `target_delimiter` is empty. A task that mixes the shapes is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..config import DataConfig
from ..data import MultipleChoiceItem
from ..io import atomic_directory


def request_shape(task: str, items: list[MultipleChoiceItem]) -> str:
    """`continuations` (one context) or `contexts` (one continuation) for every item of `task`."""
    shapes = {"continuations" if len(set(it.contexts)) == 1 else "contexts" if len(set(it.continuations)) == 1
              else "both" for it in items}
    if len(shapes) != 1 or "both" in shapes:
        raise ValueError(f"task {task!r}: its items mix request shapes ({sorted(shapes)}); lm-evaluation-harness "
                         "takes one per task")
    return shapes.pop()


def task_yaml(name: str, data_file: Path, shape: str) -> dict:
    common = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
              "test_split": "test", "output_type": "multiple_choice", "target_delimiter": "", "num_fewshot": 0,
              "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                              {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
              "metadata": {"version": 1.0, "source": "degaml export-lm-eval"}}
    if shape == "continuations":
        return {**common, "doc_to_text": "{{context}}", "doc_to_choice": "{{continuations}}", "doc_to_target": "{{gold}}"}
    return {**common, "doc_to_text": "{{gold}}", "doc_to_choice": "{{contexts}}", "doc_to_target": "{{continuation}}"}


def write_task(directory: Path, final: Path, task: str, items: list[MultipleChoiceItem]) -> str:
    """`<task>.jsonl` and `<task>.yaml` in `directory`, the YAML naming the JSONL where it will lie (`final`, the
    directory's name once complete); returns the request shape."""
    shape = request_shape(task, items)
    rows = [{"id": it.id, "question": it.question, "choices": list(it.choices), "gold": it.gold,
             "context": it.contexts[0], "continuations": list(it.continuations), "contexts": list(it.contexts),
             "continuation": it.continuations[0]} for it in items]
    (directory / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = task_yaml(f"degaml_{task}", final / f"{task}.jsonl", shape)
    (directory / f"{task}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return shape


def export_lm_eval(data: DataConfig | None = None, out: Path = Path("lm-eval-tasks")) -> None:
    """Write a degaml partition as lm-evaluation-harness tasks (YAML plus JSONL, for `--include_path`).

    Each task becomes `degaml_<task>`: the very items `degaml evaluate` scores with the same `--data` settings
    (split, limit, partition seed), and the same log-likelihood requests. As with `degaml evaluate`, the limit
    defaults to 200 items a task (`--data.limit null` exports all). lm-evaluation-harness reads `data_files`
    relative to its working directory, not to the YAML, so each YAML names its JSONL by absolute path: move the
    folder and export it again.

    Args:
        data: Tasks, the part of their partition, the items per task and the partition (as `degaml evaluate`).
        out: The output directory (written whole, atomically): `<task>.yaml` and `<task>.jsonl` per task.
    """
    from ..data.prompts import load_partitioned
    from ..io import check_output_path, check_replaceable

    data = data or DataConfig()
    check_replaceable(check_output_path(out))  # an export replaces its directory whole
    target = Path(out).resolve()
    with atomic_directory(target) as tmp:
        for task, (items, part) in load_partitioned(data).items():
            selected = part.select(items, data.split, data.limit)
            if not selected:
                raise ValueError(f"task {task!r}: its {data.split} partition is empty")
            shape = write_task(tmp, target, task, selected)
            print(f"degaml_{task}: {len(selected)} {data.split} items (partition seed {data.partition.seed}; "
                  f"limit {data.limit}), {shape} shape -> {target / f'{task}.yaml'}")
    print(f"the YAML files name their JSONL by absolute path under {target}: export again after moving it")
