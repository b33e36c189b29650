"""The whole experiment, stage by stage, each resumable and skipped when its artifacts are complete: one
module per stage (`generator_stage`, `policy_stage`, `degaml_stage`, `floors_stage`, `baseline_stage`,
`evaluation_stage`). Where each stage writes is `layout.py`'s; what a run and its folds are, `experiment.py`'s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..memory import process_peak_mb
from ..models import load_model
from .baseline_stage import baseline_stage
from .degaml_stage import degaml_stage
from .evaluation_stage import evaluation_stage
from .experiment import Experiment, folds, say
from .floors_stage import floors_stage
from .generator_stage import collect_stage, generator_stage, scaling_stage
from .layout import PRECISION_FILE, seed_run_in
from .policy_stage import policy_stage
from .publish import take_published
from .records import RunPrecision, StageTimings


class Timer:
    """Times each stage as it runs into the seed's `StageTimings` (saved after every stage)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.timings = StageTimings.load(path)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings.add(stage, time.perf_counter() - start, process_peak_mb())
            self.timings.save(self.path)


def run_experiment(exp: Experiment) -> Path:
    """Every stage for every seed, then the report. Returns the report directory."""
    from .report import build_report

    lm = load_model(exp.model)
    RunPrecision(lm.precision.dtype, lm.precision.reason).check(exp.out / PRECISION_FILE)
    fold_list = folds(exp.tasks)
    taken = take_published(exp) if exp.published is not None else []
    for seed in exp.seeds:
        if seed in taken:
            say(exp, f"seed {seed}: every evaluation taken from {exp.published}")
            continue
        seed_run = seed_run_in(exp.out, seed)
        seed_run.root.mkdir(parents=True, exist_ok=True)
        timer = Timer(seed_run.timings)
        say(exp, f"seed {seed}: collecting trajectories")
        with timer("collect"):
            collect_stage(exp, lm, seed_run)
        for fold in fold_list:  # every generator first: a fold's policy learns from the other folds' ones
            say(exp, f"seed {seed}, fold {fold.name}: targets {', '.join(fold.targets)}")
            with timer("generator"):
                generator_stage(exp, lm, seed_run, fold)
        with timer("generator"):
            scaling_stage(exp, lm, seed_run)
        for fold in fold_list:
            with timer("policy"):
                policy_stage(exp, lm, seed_run, fold, fold_list)
            with timer("degaml"):
                degaml_stage(exp, lm, seed_run, fold)
            with timer("floors"):
                floors_stage(exp, lm, seed_run, fold)
            with timer("baselines"):
                baseline_stage(exp, lm, seed_run, fold)
            # A fold's targets are scored once, after every one of their methods is trained (no later stage reads
            # a score), so a long run can be reported (`degaml report`) one fold at a time.
            with timer("evaluation"):
                evaluation_stage(exp, lm, seed_run, fold)
    return build_report(exp.out)
