"""The whole experiment, stage by stage, each resumable and skipped when its artifacts are complete. Where
each stage writes is `layout.py`'s; what a run and its folds are, `experiment.py`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import EvalConfig, ModelConfig
from ..data import task_label
from ..io import atomic_write_json
from ..memory import process_peak_mb
from ..models import AdaptedOutput, LoadedModel, load_model, write_adapter
from ..models.lora import ADAPTER_WEIGHTS
from .baseline_stage import baseline_stage, meta_trained
from .experiment import SHARED_FOLD, UNION_RESIDUAL_BASE, Experiment, Fold, folds, say, split_data
from .layout import BASE, DEGAML, DEGAML_K, GENERATED, MEAN, ORACLE, RETRIEVAL, SeedRun, seed_run
from .policy import policy_stage
from .targets import degaml_stage, floors_stage


class Timer:
    """Wall time of each stage as it runs, and the process's peak resident memory by the end of it, kept in
    timings.json as {"seconds": {stage: s}, "peak_rss_mb": {stage: MB}} (a resumed run adds its seconds and
    keeps the larger peak)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.seconds: dict[str, float] = saved.get("seconds", {})
        self.peaks: dict[str, float] = saved.get("peak_rss_mb", {})

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.peaks[stage] = max(self.peaks.get(stage, 0.0), process_peak_mb())
            atomic_write_json(self.path, {"seconds": self.seconds, "peak_rss_mb": self.peaks})


def collect_stage(exp: Experiment, lm: LoadedModel, run: SeedRun) -> None:
    from ..generator.trajectories import collect_tasks

    # With no fold generators (generator.steps 0) nothing trains on the in-domain tasks' adapters.
    tasks = list(exp.tasks.meta_training) + (list(exp.tasks.train) if exp.generator.steps else [])
    collect_tasks(lm, exp.model, split_data(exp, tasks, "train", None), run.trajectories,
                  exp.lora, replace(exp.collect, seed=run.seed), exp.progress)


def generator_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> Path:
    from ..generator.training import train_on_trajectories

    config = replace(exp.generator, seed=run.seed)
    if exp.shared_generator_steps:  # trained once, on no target: every fold may start from it
        shared_fold = Fold(SHARED_FOLD, tuple(exp.tasks.meta_training), tuple(exp.tasks.train))
        shared = train_on_trajectories(run.trajectories, run.generator(SHARED_FOLD),
                                       [task_label(t) for t in exp.tasks.train],
                                       replace(config, steps=exp.shared_generator_steps,
                                               residual_base=_residual_base(exp, lm, run, shared_fold)),
                                       exp.source, exp.progress, lm)
        if config.steps == 0:
            return shared
        config = replace(config, init_from=str(shared), residual_base="")  # its residual base comes with it
    else:
        config = replace(config, residual_base=_residual_base(exp, lm, run, fold))
    # The fold's targets are held out; training resumes, and returns at once when finished.
    return train_on_trajectories(run.trajectories, run.generator(fold.name), [task_label(t) for t in fold.targets],
                                 config, exp.source, exp.progress, lm)


def _residual_base(exp: Experiment, lm: LoadedModel, run: SeedRun, source: Fold) -> str:
    """`generator.residual_base` as generator training takes it (an adapter directory, or empty for the mean
    training adapter). `union` is union LoRA of the generator's own training tasks: the union baseline's
    meta-training (its cache, so that baseline then scores this very adapter), written as a PEFT adapter."""
    if exp.generator.residual_base != UNION_RESIDUAL_BASE:
        return exp.generator.residual_base
    out = run.residual_base(source.name)
    if not (out / ADAPTER_WEIGHTS).is_file():
        say(exp, f"fold {source.name}: union LoRA of {len(source.training)} tasks as the generator's residual base")
        state, log = meta_trained(exp, lm, run, source, "union")
        write_adapter(state, exp.lora, exp.model, out, info={"baseline": "union", **log})
    return str(out)


def evaluation_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> None:
    """Test scores of every method on every target: the only stage that reads test partitions."""
    from ..adaptation.latent import per_sample_scorer
    from ..data.prompts import load_partitioned
    from ..evaluation.adapted import evaluate_adapted
    from ..evaluation.harness import write_evaluation

    e = exp.evaluation
    config = EvalConfig(protocol=e.protocol, batch_size=e.batch_size)
    for target in fold.targets:
        data = split_data(exp, [target], "test", e.limit)
        loaded = load_partitioned(data)
        scored: dict[str, tuple[str, Any]] = {}  # scoring digest -> (method, its results): one adapter, one pass
        for method in (BASE, MEAN, RETRIEVAL, GENERATED, DEGAML, ORACLE, DEGAML_K, *exp.baselines.methods):
            directory = run.method(target, method)
            if directory.results.is_file():
                continue
            adapter = None if method == BASE else directory.output
            digest = "base model" if adapter is None else AdaptedOutput.load(adapter).scoring_digest()
            record = {"method": method, "target": target, "data": data, "eval": config}
            if digest in scored:  # e.g. DeGAML's policy chose `none`: the generated adapter's very scores
                record["scores_of"], (results, partitions) = scored[digest]
            else:
                results, partitions = evaluate_adapted(lm, adapter, data, config, progress=exp.progress,
                                                       loaded=loaded, item_scorer=per_sample_scorer)
                scored[digest] = (method, (results, partitions))
            header = (f"model: {exp.model} | method: {method} | protocol: {e.protocol} | split: test | "
                      f"limit: {e.limit} | partition seed: {exp.partition_seed}")
            write_evaluation(directory.eval, results, partitions, record, header, exp.partition_seed, lm)
            if method == BASE:
                atomic_write_json(directory.cost, {"seconds": 0.0, "labelled_target_examples": 0})
            say(exp, f"{target}: {method} scored ({100 * results[0].metrics['acc']:.1f} acc)")


def run_experiment(exp: Experiment) -> Path:
    """Every stage for every seed, then the report. Returns the report directory."""
    from .report import build_report

    model_config = ModelConfig(name=exp.model, dtype=exp.dtype, device=exp.device)  # type: ignore[arg-type]
    lm = load_model(model_config)
    fold_list = folds(exp.tasks)
    for seed in exp.seeds:
        run = seed_run(exp.out, seed)
        run.root.mkdir(parents=True, exist_ok=True)
        timer = Timer(run.timings)
        say(exp, f"seed {seed}: collecting trajectories")
        with timer("collect"):
            collect_stage(exp, lm, run)
        for fold in fold_list:  # every generator first: a fold's policy learns from the other folds' ones
            say(exp, f"seed {seed}, fold {fold.name}: targets {', '.join(fold.targets)}")
            with timer("generator"):
                generator_stage(exp, lm, run, fold)
        for fold in fold_list:
            with timer("policy"):
                policy_stage(exp, lm, run, fold, fold_list)
            with timer("degaml"):
                degaml_stage(exp, lm, run, fold)
            with timer("floors"):
                floors_stage(exp, run, fold)
            with timer("baselines"):
                baseline_stage(exp, lm, run, fold)
        for fold in fold_list:  # test partitions are touched once, after everything is trained
            with timer("evaluation"):
                evaluation_stage(exp, lm, run, fold)
    return build_report(exp.out)
