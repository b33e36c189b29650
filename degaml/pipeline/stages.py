"""The whole experiment, stage by stage, each resumable and skipped when its artifacts are complete. Where
each stage writes is `layout.py`'s.

A fold is one held-out in-domain task (trained on every other `train` task), or `all` (trained on every
`train` task) whose targets are the out-of-domain tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ..config import DataConfig, EvalConfig, LoraSettings, ModelConfig
from ..data import task_label
from ..generator.card import GeneratorTrainConfig
from ..generator.trajectories import CollectConfig
from ..io import atomic_write_json
from ..memory import peak_memory_mb, process_peak_mb, reset_peak_memory
from ..models import LoadedModel, load_model
from .layout import BASE, DEGAML, DEGAML_K, GENERATED, MEAN, ORACLE, RETRIEVAL, SeedRun, seed_run
from .settings import BaselineSettings, EvaluationSettings, PolicySettings, TaskSets


@dataclass
class Experiment:
    name: str
    out: Path
    model: str
    lora: LoraSettings
    seeds: list[int]
    partition_seed: int
    source: str
    dtype: str
    device: str
    tasks: TaskSets
    collect: CollectConfig
    """Its seed is replaced by each of the run's seeds."""
    generator: GeneratorTrainConfig
    """Its seed is replaced by each of the run's seeds."""
    policy: PolicySettings
    evaluation: EvaluationSettings
    baselines: BaselineSettings
    shared_generator_steps: int = 0
    """> 0: one generator first trains this many steps on `tasks.meta_training` alone (it never sees a target),
    and every fold's generator continues from it for `generator.steps`; 0: each fold's trains from scratch."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.shared_generator_steps and not self.tasks.meta_training:
            raise ValueError("shared_generator_steps needs tasks.meta_training: the shared generator trains on "
                             "those alone")


ALL_FOLD = "all"
"""The fold trained on every `train` task, whose targets are the out-of-domain ones."""
SHARED_FOLD = "shared"
"""Where the generator trained on the meta-training tasks alone lives (`shared_generator_steps`)."""


@dataclass(frozen=True)
class Fold:
    name: str
    training: tuple[str, ...]
    targets: tuple[str, ...]
    """Task names or task files, as the settings give them (directories use `task_label`)."""


def folds(tasks: TaskSets) -> list[Fold]:
    meta, train = tuple(tasks.meta_training), tuple(tasks.train)
    labels = {task_label(t) for t in train}
    clash = {task_label(t) for t in meta} & {task_label(t) for t in train + tuple(tasks.heldout)
                                             + tuple(tasks.out_of_domain)}
    if clash:
        raise ValueError(f"tasks.meta_training {sorted(clash)} are also in-domain tasks or targets: every fold "
                         "trains on the meta-training tasks, so none may be a target")
    result = [Fold(task_label(t), meta + tuple(x for x in train if task_label(x) != task_label(t)), (t,))
              for t in tasks.heldout if task_label(t) in labels]
    rest = tuple(tasks.out_of_domain) + tuple(t for t in tasks.heldout if task_label(t) not in labels)
    if rest:
        result.append(Fold(ALL_FOLD, meta + train, rest))
    return result


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


def _data(exp: Experiment, tasks: list[str], split: str, limit: int | None) -> DataConfig:
    return DataConfig(tasks=tasks, split=split, limit=limit, partition_seed=exp.partition_seed, source=exp.source)  # type: ignore[arg-type]


def _say(exp: Experiment, message: str) -> None:
    if exp.progress:
        print(f"[{exp.name}] {message}", flush=True)


def collect_stage(exp: Experiment, lm: LoadedModel, run: SeedRun) -> None:
    from ..generator.trajectories import collect_tasks

    tasks = list(exp.tasks.meta_training) + list(exp.tasks.train)
    collect_tasks(lm, exp.model, _data(exp, tasks, "train", None), run.trajectories,
                  exp.lora, replace(exp.collect, seed=run.seed), exp.progress)


def generator_stage(exp: Experiment, run: SeedRun, fold: Fold) -> Path:
    from ..generator.training import train_on_trajectories

    config = replace(exp.generator, seed=run.seed)
    if exp.shared_generator_steps:  # trained once, on no target: every fold may start from it
        shared = train_on_trajectories(run.trajectories, run.generator(SHARED_FOLD),
                                       [task_label(t) for t in exp.tasks.train],
                                       replace(config, steps=exp.shared_generator_steps), exp.source, exp.progress)
        config = replace(config, init_from=str(shared))
    # The fold's targets are held out; training resumes, and returns at once when finished.
    return train_on_trajectories(run.trajectories, run.generator(fold.name), [task_label(t) for t in fold.targets],
                                 config, exp.source, exp.progress)


def policy_actions(settings: PolicySettings) -> list:
    from ..adaptation.actions import default_actions

    actions = default_actions()
    if settings.actions is None:
        return actions
    known = {a.label: a for a in actions}
    unknown = [label for label in settings.actions if label not in known]
    if unknown:
        raise ValueError(f"policy.actions: unknown action(s) {unknown}; valid: {list(known)}")
    return [known[label] for label in settings.actions]


def policy_tasks(fold: Fold, fold_list: list[Fold]) -> list[tuple[str, str]]:
    """The reward tasks of a fold's policy, each with the fold whose generator adapts it: the other in-domain
    folds' targets, each by its own fold's generator, which never trained on it (nested leave-one-out: the
    policy learns from out-of-sample adapters, as its target's is). With no other in-domain fold, the fold's
    training tasks by its own generator (in-sample; policy.json says so)."""
    others = [(f.targets[0], f.name) for f in fold_list
              if f.name not in (ALL_FOLD, fold.name) and f.targets[0] not in fold.targets]
    return others or [(t, fold.name) for t in fold.training]


def policy_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold, fold_list: list[Fold]) -> Path:
    from ..adaptation.policy import PolicyConfig
    from ..adaptation.policy_training import fit_policy_on_tasks
    from ..generator.generation import Generator

    out = run.policy(fold.name)
    if (out / "policy.json").is_file():
        return out
    p = exp.policy
    config = PolicyConfig(method=p.method, epochs=p.epochs, lr=p.lr, cost_penalty=p.cost_penalty, seed=run.seed)
    chosen = policy_tasks(fold, fold_list)[:p.max_tasks]
    rewards = {task_label(task): run.rewards(name) for task, name in chosen}  # shared with that fold's oracle
    fit_policy_on_tasks([(task, Generator(run.generator(name))) for task, name in chosen], lm, policy_actions(p),
                        config, out, _data(exp, [], "validation", p.validation_limit), p.adaptation_prompts,
                        exp.progress, exclude=fold.targets, rewards_dir=lambda task, gen: rewards[task])
    return out


def degaml_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> None:
    """Per target: the generated adapter (generalization only), the policy's adaptation of it (zero labels),
    the oracle (the action best on the target's validation items: a reference) and DeGAML-k (the generated
    adapter fine-tuned on the k-label track's support examples)."""
    from ..adaptation.actions import Action
    from ..adaptation.policy import load_policy
    from ..adaptation.task_setup import adapt_task, adaptation_context
    from ..baselines.common import fine_tune, load_examples
    from ..data.prompts import task_items
    from ..generator.generation import Generator
    from ..models import write_adapter

    gen = Generator(run.generator(fold.name))
    policy = load_policy(run.policy(fold.name))
    setup = _baseline_setup(exp, run)
    b = exp.baselines
    for target in fold.targets:
        if all(run.method(target, m).cost.is_file() for m in (GENERATED, DEGAML, ORACLE, DEGAML_K)):
            continue
        items = task_items(target, "train", exp.partition_seed, source=exp.source)[:exp.policy.adaptation_prompts]
        ctx = adaptation_context(gen, lm, task_label(target), items, run.seed)
        for method in (GENERATED, DEGAML):
            directory = run.method(target, method)
            if directory.cost.is_file():
                continue
            reset_peak_memory(lm.device)
            result = adapt_task(gen, ctx, directory.output, action=Action("none")) if method == GENERATED \
                else adapt_task(gen, ctx, directory.output, policy=policy)
            atomic_write_json(directory.cost, {"seconds": result.info["seconds"], "labelled_target_examples": 0,
                                               "action": result.action.label, **peak_memory_mb(lm.device)})
            _say(exp, f"{target}: {method} = {result.action.label} ({result.info['seconds']:.1f} s)")
        if not run.method(target, ORACLE).cost.is_file():
            _oracle(exp, lm, run, fold, target, gen, ctx)
        directory = run.method(target, DEGAML_K)
        if not directory.cost.is_file():
            reset_peak_memory(lm.device)
            started = time.perf_counter()
            support = load_examples(lm, target, setup, setup.support)  # the k-label baselines' very examples
            generated, _ = ctx.generate(run.seed)
            state, losses = fine_tune(lm, exp.lora, support, b.steps, b.lr, b.batch_size, run.seed, init=generated)
            seconds = time.perf_counter() - started
            write_adapter(state, exp.lora, exp.model, directory.output,
                          info={"variant": "generated adapter + target fine-tune", "support_losses": losses,
                                "support_examples": len(support), "seconds": seconds})
            atomic_write_json(directory.cost, {"seconds": seconds, "labelled_target_examples": len(support),
                                               **peak_memory_mb(lm.device)})
            _say(exp, f"{target}: {DEGAML_K} ({seconds:.1f} s)")


def _oracle(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold, target: str, gen: Any, ctx: Any) -> None:
    """Every policy action measured on the target's validation items; the best one (the first on ties: `none`
    leads the list) is applied, and recorded with the validation labels it read."""
    from ..adaptation.actions import Action
    from ..adaptation.policy_training import preferred_metric
    from ..adaptation.rewards import measure_actions
    from ..adaptation.task_setup import adapt_task
    from ..data.prompts import load_partitioned

    actions = policy_actions(exp.policy)
    validation = _data(exp, [target], "validation", exp.policy.validation_limit)
    started = time.perf_counter()
    table = measure_actions(ctx, task_label(target), actions, validation, EvalConfig(), run.rewards(fold.name),
                            load_partitioned(validation), preferred_metric(target), progress=False)
    best = max(sorted(actions, key=lambda a: a != Action("none")), key=lambda a: table[a.label]["score"])
    directory = run.method(target, ORACLE)
    adapt_task(gen, ctx, directory.output, action=best)
    atomic_write_json(directory.cost, {"seconds": time.perf_counter() - started, "reference": True,
                                       "labelled_target_examples": table[best.label]["n"], "action": best.label,
                                       "validation_scores": {a: r["score"] for a, r in table.items()}})
    _say(exp, f"{target}: {ORACLE} = {best.label} (validation {100 * table[best.label]['score']:.1f})")


def floors_stage(exp: Experiment, run: SeedRun, fold: Fold) -> None:
    """Per target, the zero-label floors from the fold's training data: the mean of its training tasks'
    adapters, and their retrieval mixture for the target's unlabelled prompts (the ones DeGAML sees)."""
    from ..data.prompts import task_items
    from ..generator.dataset import average_states
    from ..generator.encoder import PromptEncoder
    from ..generator.floors import task_adapters
    from ..generator.retrieval import retrieval_mixture
    from ..models import write_adapter

    pending = [t for t in fold.targets if not all(run.method(t, m).cost.is_file() for m in (MEAN, RETRIEVAL))]
    if not pending:
        return
    started = time.perf_counter()
    training = [task_label(t) for t in fold.training]
    adapters = task_adapters(run.trajectories, training)
    mean = average_states(list(adapters.values()))
    mean_seconds = time.perf_counter() - started
    g = exp.generator
    encoder = PromptEncoder.with_default_cache(g.encoder, g.prompt_tokens)

    def prompts(task: str, limit: int) -> list[str]:
        return [it.prompt for it in task_items(task, "train", exp.partition_seed, source=exp.source)[:limit]]

    library = {task_label(t): (prompts(t, g.max_prompts), adapters[task_label(t)]) for t in fold.training}
    for target in pending:
        started = time.perf_counter()
        mixed, weights = retrieval_mixture(prompts(target, exp.policy.adaptation_prompts), library, encoder)
        for method, state, seconds, info in ((MEAN, mean, mean_seconds, {"tasks": training}),
                                             (RETRIEVAL, mixed, time.perf_counter() - started, {"weights": weights})):
            directory = run.method(target, method)
            write_adapter(state, exp.lora, exp.model, directory.output, info={**info, "seconds": seconds})
            atomic_write_json(directory.cost, {"seconds": seconds, "labelled_target_examples": 0})
        _say(exp, f"{target}: {MEAN} and {RETRIEVAL} adapters")


def _baseline_setup(exp: Experiment, run: SeedRun):
    from ..baselines import BaselineSetup

    b = exp.baselines
    return BaselineSetup(model=exp.model, lora=exp.lora, support=b.support, steps=b.steps, lr=b.lr,
                         batch_size=b.batch_size, meta_examples=b.meta_examples, seed=run.seed,
                         partition_seed=exp.partition_seed, source=exp.source, dtype=exp.dtype,  # type: ignore[arg-type]
                         device=exp.device)


def baseline_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> None:
    from ..baselines import METHODS, prepare

    b = exp.baselines
    setup = _baseline_setup(exp, run)
    for method in b.methods:
        if method not in METHODS:
            raise ValueError(f"baselines.methods: unknown method {method!r}; valid: {', '.join(METHODS)}")
        spec = METHODS[method]
        config = getattr(b, spec.option, None) or spec.config()  # settings of its own, or defaults
        pending = [t for t in fold.targets if not run.method(t, method).cost.is_file()]
        if not pending:
            continue
        meta, log = _meta_trained(exp, lm, run, fold, spec, setup, config)
        for target in pending:
            job = prepare(setup, target, [], needs_meta=False, lm=lm)
            job.log.update(log)
            reset_peak_memory(lm.device)
            started = time.perf_counter()
            directory = run.method(target, method)
            info = spec.module.finish(job, config, meta, directory.output, started)
            seconds = time.perf_counter() - started + log.get("meta_train_seconds", 0.0)
            peak = peak_memory_mb(lm.device)  # the larger of meta-training's and this target's
            peak["peak_rss_mb"] = max(peak["peak_rss_mb"], log.get("meta_peak_rss_mb", 0.0))
            atomic_write_json(directory.cost, {"seconds": seconds, "labelled_target_examples": info["support_examples"],
                                                        "meta_train_seconds": log.get("meta_train_seconds", 0.0),
                                                        **peak})
            _say(exp, f"{target}: {method} ({seconds:.1f} s with meta-training)")


def _meta_trained(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold, spec: Any, setup: Any, config: Any
                  ) -> tuple[dict, dict]:
    """A method's meta-training for this fold, from its cache or computed and cached. The cache is named by
    what determines it (`Method.meta_key`): union and union-finetune with the same settings share one."""
    from ..baselines import prepare

    if not spec.meta_trains:
        return {}, {}
    cache = run.baseline_cache(fold.name, spec.meta_key(config))
    if (cache / "meta.json").is_file():
        return load_file(str(cache / "meta.safetensors")), json.loads((cache / "meta.json").read_text())
    job = prepare(setup, fold.targets[0], list(fold.training), needs_meta=True, lm=lm)
    reset_peak_memory(lm.device)
    start = time.perf_counter()
    meta = spec.module.meta_train(job, config, exp.progress)
    log = {**job.log, "meta_train_seconds": time.perf_counter() - start, "meta_tasks": list(fold.training),
           "meta_peak_rss_mb": peak_memory_mb(lm.device)["peak_rss_mb"]}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / ".meta.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in meta.items()}, str(tmp))
    tmp.replace(cache / "meta.safetensors")
    atomic_write_json(cache / "meta.json", log)
    return meta, log


def evaluation_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> None:
    """Test scores of every method on every target: the only stage that reads test partitions."""
    from ..adaptation.latent import per_sample_scorer
    from ..data.prompts import load_partitioned
    from ..evaluation.adapted import evaluate_adapted
    from ..evaluation.harness import write_evaluation

    e = exp.evaluation
    for target in fold.targets:
        data = _data(exp, [target], "test", e.limit)
        loaded = load_partitioned(data)
        for method in (BASE, MEAN, RETRIEVAL, GENERATED, DEGAML, ORACLE, DEGAML_K, *exp.baselines.methods):
            directory = run.method(target, method)
            if directory.results.is_file():
                continue
            adapter = None if method == BASE else directory.output
            config = EvalConfig(protocol=e.protocol, batch_size=e.batch_size)
            results, partitions = evaluate_adapted(lm, adapter, data, config, progress=exp.progress, loaded=loaded,
                                                   item_scorer=per_sample_scorer)
            header = (f"model: {exp.model} | method: {method} | protocol: {e.protocol} | split: test | "
                      f"limit: {e.limit} | partition seed: {exp.partition_seed}")
            write_evaluation(directory.eval, results, partitions, {"method": method, "target": target,
                                                                       "data": data, "eval": config},
                             header, exp.partition_seed, lm.source)
            if method == BASE:
                atomic_write_json(directory.cost, {"seconds": 0.0, "labelled_target_examples": 0})
            _say(exp, f"{target}: {method} scored ({100 * results[0].metrics['acc']:.1f} acc)")


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
        _say(exp, f"seed {seed}: collecting trajectories for "
                  f"{len(exp.tasks.meta_training) + len(exp.tasks.train)} tasks")
        with timer("collect"):
            collect_stage(exp, lm, run)
        for fold in fold_list:  # every generator first: a fold's policy learns from the other folds' ones
            _say(exp, f"seed {seed}, fold {fold.name}: targets {', '.join(fold.targets)}")
            with timer("generator"):
                generator_stage(exp, run, fold)
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
