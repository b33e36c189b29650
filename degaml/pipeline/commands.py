"""The `degaml run` and `report` commands (typed functions; `degaml/cli.py` is the command table)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..config import LoraSettings, ModelConfig, PartitionConfig
from ..generator.record import GeneratorTrainConfig
from ..generator.settings import CollectConfig
from .settings import BaselineSettings, EvaluationSettings, PolicySettings, TaskSets


def run(
    name: str | None = None,
    out: Path | None = None,
    model: ModelConfig | None = None,
    lora: LoraSettings | None = None,
    seeds: list[int] | None = None,
    partition: PartitionConfig | None = None,
    tasks: TaskSets | None = None,
    collect: CollectConfig | None = None,
    generator: GeneratorTrainConfig | None = None,
    policy: PolicySettings | None = None,
    evaluation: EvaluationSettings | None = None,
    baselines: BaselineSettings | None = None,
    holdout: Literal["one_task", "all_targets", "seen"] | None = None,
    floors: list[str] | None = None,
    prompt_controls: list[str] | None = None,
    task_counts: list[int] | None = None,
    shared_generator_steps: int | None = None,
    ceiling: int | Literal["trajectory"] | None = None,
    progress: bool | None = None,
    published: Path | None = None,
) -> None:
    """Run the whole experiment of a config and write its report.

    Collect trajectories, train the generators, the policies and the baselines, adapt every target, score each
    fold's targets once its methods are trained, and write the report. Every stage resumes and skips what is
    complete.

    Usually `degaml run --config offline`; any key can be overridden by a flag, e.g. `--evaluation.limit 20`.

    Args:
        name: Experiment name (report title).
        out: Run directory.
        model: Base model (`degaml list-models`, a hub id or a local directory), its dtype and device.
        lora: LoRA rank, alpha and targets (default: r 8, alpha 16, all seven projections).
        seeds: Training seeds; the report gives mean and spread over them (default [0]).
        partition: Where tasks are read from and their train/validation/test partition (fixed across seeds).
        tasks: Meta-training tasks (never targets), in-domain (leave-one-out) and out-of-domain targets.
        collect: Trajectory collection (its seed is replaced by each of `seeds`).
        generator: Generator shapes and training (its seed is replaced by each of `seeds`).
        policy: Policy action space, reward budget and training.
        evaluation: Items per target, the partition scored, the protocol.
        baselines: Which baselines, their shared target-data budget and their own settings.
        holdout: `one_task` (leave-one-task-out: each fold's generator, floors and baselines learn from every
            task but its target) or `all_targets` (one generator trained on `tasks.meta_training` alone serves
            every fold, and so do the floors and the baselines' meta-training) or `seen` (the paper's in-domain
            reading: that generator also trains on the `tasks.train` tasks' own trajectories; targets are scored
            on their held-out items).
        floors: Zero-label floors from the generator's training data (mean, retrieval, union-matched).
        prompt_controls: The generated adapter also from another target's prompts (`swapped`) or random text.
        task_counts: The scaling curve: more shared generators, each on the first K meta-training tasks.
        shared_generator_steps: If > 0, one generator first trains this many steps on `tasks.meta_training`
            alone (no target among them); with `holdout: one_task` each fold's generator continues from it for
            `generator.steps`.
        ceiling: The target-finetuned ceiling: null, none; `trajectory`, the target's own trajectory's
            adapter; N, a fresh N-step LoRA on its train partition (as `degaml headroom` trains it).
        progress: Show progress.
        published: A `degaml publish` folder of this experiment (results/<name>): seeds it holds whole are
            taken from it instead of computed.
    """
    given = dict(locals())
    from ..data.tasks import check_task_names
    from ..io import claim_directory, exclusive_directory, remove_temporaries
    from .experiment import SETTINGS_FILE, Experiment
    from .stages import run_experiment

    # The parameters are Experiment's fields (tests/test_cli.py holds them to it); unset ones take its defaults.
    experiment = Experiment(**{k: v for k, v in given.items() if v is not None})
    check_task_names(experiment.all_tasks)  # an unknown task is refused before the run directory exists
    claim_directory(experiment.out, (SETTINGS_FILE, ".lock"))  # .lock: a run killed before it saved its settings
    with exclusive_directory(experiment.out):  # a second `degaml run` on the same directory is refused
        _refuse_other_settings(experiment)
        stale = remove_temporaries(experiment.out)
        if stale:
            print(f"removed {len(stale)} unfinished temporary file(s) an interrupted run left in {experiment.out}")
        experiment.save(experiment.out / SETTINGS_FILE)
        report_dir = run_experiment(experiment)
    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir}")


def _refuse_other_settings(experiment) -> None:
    """A run directory resumes only under the settings that made it: its artifacts would otherwise mix two
    experiments. Names the settings that differ."""
    from ..config import to_dict
    from .experiment import PLACE_SETTINGS, SETTINGS_FILE, Experiment

    if not (experiment.out / SETTINGS_FILE).is_file():
        return
    saved, new = to_dict(Experiment.load(experiment.out)), to_dict(experiment)
    changed = sorted(k for k in new if k not in (*PLACE_SETTINGS, "name") and saved.get(k) != new[k])
    if changed:
        raise ValueError(f"{experiment.out} holds a run made with other settings ({', '.join(changed)} differ from "
                         f"its {SETTINGS_FILE}); resume it with the same config, or choose another --out")


def report(run_dir: Path) -> None:
    """Rebuild the report of a `degaml run` directory from its artifacts (nothing is recomputed).

    Args:
        run_dir: The run directory (holds experiment.yaml and seed_*/), or a `degaml headroom` directory.
    """
    import sys

    from .headroom import is_headroom_directory, write_table
    from .report import build_report
    from .report.summary import SUMMARY_FILE, ReportSummary

    if is_headroom_directory(Path(run_dir)):
        print(write_table(Path(run_dir)))
        return

    report_dir = build_report(Path(run_dir))
    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir}")
    missing = ReportSummary.load(report_dir / SUMMARY_FILE).missing
    if missing:
        print(f"degaml: warning: {len(missing)} evaluation(s) of {run_dir} are missing, first: {missing[0]} "
              "(all under 'missing evaluations' in the report)", file=sys.stderr)
