"""The `degaml baseline <name>` commands, derived from the registry (`degaml/cli.py` is the command table)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .settings import BaselineSetup, MethodSettings


def _run_baseline(method: str, task: str, out: Path, train_tasks: list[str] | str, setup, config, progress: bool) -> None:
    from ..config import task_names
    from ..io import exclusive_output
    from . import METHODS, BaselineSetup, prepare, run_baseline
    from .common import BaselineRecord

    spec = METHODS[method]
    setup = setup or BaselineSetup()
    config = config or spec.config()
    with exclusive_output(out):  # checked and locked before any training
        job = prepare(setup, task, task_names(train_tasks) if spec.meta_trains else [], spec.meta_trains)
        record = BaselineRecord.from_info(run_baseline(method, job, config, Path(out), progress), str(out))
    print(f"{method}: {out} ({record.seconds:.1f} s, peak RSS {record.peak_rss_mb:.0f} MB; {record.support_examples} "
          "labelled target examples)")


def baseline_commands() -> dict[str, Callable[..., None]]:
    """`degaml baseline <name>` for every registered baseline."""
    from .settings import SETTINGS

    return {name: baseline_command(spec) for name, spec in SETTINGS.items()}


def baseline_command(spec: MethodSettings) -> Callable[..., None]:
    """`degaml baseline <name>`: a typed command derived from the registry entry (its flags are the shared
    `--setup.*` and the method's own `--<name>.*`)."""
    P = inspect.Parameter

    def command(task: str, out: Path, train_tasks: list[str] | str | None = None, setup: BaselineSetup | None = None,
                progress: bool = True, **settings: Any) -> None:
        _run_baseline(spec.name, task, out, train_tasks or [], setup, settings.get(spec.option), progress)

    params = [P("task", P.POSITIONAL_OR_KEYWORD, annotation=str), P("out", P.POSITIONAL_OR_KEYWORD, annotation=Path)]
    docs = ["task: Target task (name or .json/.jsonl file), held out from meta-training.",
            "out: Output directory (what `degaml evaluate --adapter` scores)."]
    if spec.meta_trains:
        params.append(P("train_tasks", P.POSITIONAL_OR_KEYWORD, annotation=list[str] | str))
        docs.append("train_tasks: Meta-training tasks (`--train_tasks a,b`).")
    params.append(P("setup", P.POSITIONAL_OR_KEYWORD, default=None, annotation=BaselineSetup | None))
    docs.append("setup: Base model (`--setup.model.name`), LoRA, partition and the target-data budget shared by "
                "every baseline.")
    if spec.has_settings:
        params.append(P(spec.option, P.POSITIONAL_OR_KEYWORD, default=None, annotation=spec.config | None))
        docs.append(f"{spec.option}: The method's own settings.")
    params.append(P("progress", P.POSITIONAL_OR_KEYWORD, default=True, annotation=bool))
    docs.append("progress: Show progress bars.")
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    command.__name__ = command.__qualname__ = f"baseline_{spec.option}"
    command.__doc__ = f"{spec.summary} See docs/baselines.md.\n\nArgs:\n" + "".join(f"    {d}\n" for d in docs)
    return command
