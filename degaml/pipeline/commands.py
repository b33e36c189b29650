"""The `degaml run` and `report` commands (typed functions; `degaml/cli.py` is the command table)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..config import LoraSettings, dump_yaml
from ..generator.card import GeneratorTrainConfig
from ..generator.trajectories import CollectConfig
from .settings import BaselineSettings, EvaluationSettings, PolicySettings, TaskSets


def run(
    name: str = "experiment",
    out: Path = Path("runs/experiment"),
    model: str = "smollm2-135m-instruct",
    lora: LoraSettings | None = None,
    seeds: list[int] | None = None,
    partition_seed: int = 0,
    source: Literal["offline", "hub"] = "offline",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
    device: str = "auto",
    tasks: TaskSets | None = None,
    collect: CollectConfig | None = None,
    generator: GeneratorTrainConfig | None = None,
    policy: PolicySettings | None = None,
    evaluation: EvaluationSettings | None = None,
    baselines: BaselineSettings | None = None,
    shared_generator_steps: int = 0,
    progress: bool = True,
) -> None:
    """Run the whole experiment: collect trajectories, train generators leave-one-task-out, train the
    policies, adapt every held-out task, train the baselines, evaluate everything on the test partitions
    (once, at the end), and write the report. Every stage resumes and skips what is already complete.

    Usually `degaml run --config configs/offline.yaml` (the offline default; without a config the library
    defaults apply, which are larger); any key can be overridden by a flag, e.g. `--evaluation.limit 20`.

    Args:
        name: Experiment name (report title).
        out: Run directory.
        model: Base model (offline default, hub id or local directory).
        lora: LoRA rank, alpha and targets (default: r 8, alpha 16, all seven projections).
        seeds: Training seeds; the report gives mean and spread over them (default [0]).
        partition_seed: Seed of every task's train/validation/test partition (the same for all seeds).
        source: Where tasks are read from.
        dtype: Base model dtype.
        device: `auto`, `cpu`, `cuda`, ...
        tasks: Meta-training tasks (never targets), in-domain tasks (leave-one-out targets), out-of-domain
            targets.
        collect: Trajectory collection (its seed is replaced by each of `seeds`).
        generator: Generator shapes and training (its seed is replaced by each of `seeds`).
        policy: Policy action space, reward budget and training.
        evaluation: Test items per target.
        baselines: Which baselines, their shared target-data budget and their own settings.
        shared_generator_steps: If > 0, one generator first trains this many steps on `tasks.meta_training`
            alone (no target among them), and each fold's generator continues from it for `generator.steps`.
        progress: Show progress.
    """
    from ..io import atomic_write_text, exclusive_directory, remove_temporaries
    from .experiment import Experiment
    from .stages import run_experiment

    experiment = Experiment(name=name, out=Path(out), model=model, lora=lora or LoraSettings(), seeds=seeds or [0],
                            partition_seed=partition_seed, source=source, dtype=dtype, device=device,
                            tasks=tasks or TaskSets(), collect=collect or CollectConfig(),
                            generator=generator or GeneratorTrainConfig(), policy=policy or PolicySettings(),
                            evaluation=evaluation or EvaluationSettings(), baselines=baselines or BaselineSettings(),
                            shared_generator_steps=shared_generator_steps, progress=progress)
    record = {k: v for k, v in vars(experiment).items() if k not in ("out", "progress")}
    with exclusive_directory(out):  # a second `degaml run` on the same directory is refused
        stale = remove_temporaries(out)
        if stale:
            print(f"removed {len(stale)} unfinished temporary file(s) an interrupted run left in {out}")
        atomic_write_text(Path(out) / "experiment.yaml", dump_yaml(record))
        report_dir = run_experiment(experiment)
    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir}")


def report(run_dir: Path) -> None:
    """Rebuild the report of a `degaml run` directory from its artifacts (nothing is recomputed).

    Args:
        run_dir: The run directory (holds experiment.yaml and seed_*/).
    """
    from .report import build_report

    report_dir = build_report(Path(run_dir))
    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir}")
