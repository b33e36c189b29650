"""The `degaml prepare-data` command (a typed function; `degaml/cli.py` is the command table)."""

from __future__ import annotations

import json
from pathlib import Path

from .bigbench import MANIFEST, prepare_bigbench
from .tasks import TASKS, load_task


def prepare_data(sdist: Path | None = None) -> None:
    """Extract BIG-bench's multiple-choice JSON tasks into the data cache as meta-training tasks.

    Runs once (the install script runs it). Downloads the pinned sdist `bigbench==1.0.0` with `pip download
    --no-deps` unless given, checks its sha256, and reads only its task.json files; no task may duplicate an
    in-domain or out-of-domain target (degaml/data/bigbench.py has the rules).

    Args:
        sdist: A local copy of bigbench-1.0.0.tar.gz (its sha256 is checked all the same).
    """
    targets = {name: load_task(name) for name, task in TASKS.items() if task.domain in ("in", "out")}
    out = prepare_bigbench(targets, sdist)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    kept, excluded = manifest["tasks"], manifest["excluded"]
    print(f"BIG-bench: {len(kept)} tasks ({sum(t['items'] for t in kept.values()):,} items) in {out / 'tasks'}; "
          f"{len(excluded)} excluded (reasons in {out / MANIFEST})")
