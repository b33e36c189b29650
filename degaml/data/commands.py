"""The `degaml prepare-data` command (a typed function; `degaml/cli.py` is the command table)."""

from __future__ import annotations

from pathlib import Path

from .bigbench import MANIFEST, Manifest, Source, prepare_bigbench
from .tasks import TASKS, load_task


def prepare_data(sdist: Path | None = None, folder: Path | None = None, hub: bool = False) -> None:
    """Extract BIG-bench's multiple-choice JSON tasks into the data cache as optional meta-training tasks.

    No shipped config needs them. With no flag, downloads the pinned sdist `bigbench==1.0.0` (358 MB) with
    `pip download --no-deps` where the registry still serves it (since late 2026 it does not). Reads only the
    task.json files; each one's sha256 goes into the manifest, and no task may duplicate an in-domain or
    out-of-domain target (degaml/data/bigbench.py has the rules). Runs once; a prepared cache is kept.

    Args:
        sdist: A local copy of bigbench-1.0.0.tar.gz (its sha256 is checked against the pinned one).
        folder: A BIG-bench checkout or an extracted sdist (a folder that holds benchmark_tasks/).
        hub: Read the tasks from the Hugging Face hub (tasksource/bigbench; needs the hub).
    """
    if sum(x is not None and x is not False for x in (sdist, folder, hub or None)) > 1:
        raise ValueError("give at most one of --sdist, --folder and --hub")
    if sdist is not None and not Path(sdist).is_file():
        raise FileNotFoundError(f"--sdist {sdist}: no such file")
    source = (Source("sdist", Path(sdist)) if sdist is not None else Source("folder", Path(folder))
              if folder is not None else Source("hub") if hub else Source("sdist"))
    targets = {name: load_task(name) for name, task in TASKS.items() if task.domain in ("in", "out")}
    out = prepare_bigbench(targets, source=source)
    manifest = Manifest.load(out)
    kept, excluded = manifest.tasks, manifest.excluded
    print(f"BIG-bench from {manifest.source}: {len(kept)} tasks ({sum(t['items'] for t in kept.values()):,} "
          f"items) in {out / 'tasks'}; {len(excluded)} excluded (reasons in {out / MANIFEST})")
