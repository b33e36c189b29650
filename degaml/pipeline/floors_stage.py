"""Per target, the zero-label floors from the generator's training data (the run's `floors`): the mean of its
training tasks' adapters, their retrieval mixture for the target's unlabelled prompts (the ones DeGAML sees)
and for its prompt controls' prompts, union LoRA matched to the generator's training budget; and the target-finetuned ceiling."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace

from ..data import task_label
from ..models import LoadedModel, LoraState, write_adapter
from .experiment import Experiment, Fold, say
from .layout import MEAN, RETRIEVAL, TARGET_FINETUNED, UNION_MATCHED, SeedRun
from .records import MetaTraining, MethodCost


def floors_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold) -> None:
    lookups = [m for m in (MEAN, RETRIEVAL) if m in exp.floors] + list(exp.controls_of(RETRIEVAL))
    pending = {m: [t for t in fold.targets if not seed_run.method(t, m).cost.is_file()]
               for m in (*exp.floors, *lookups, *exp.ceiling_methods)}
    if not any(pending.values()):
        return
    if any(pending[m] for m in lookups):
        _mean_and_retrieval(exp, lm, seed_run, fold, {m: pending[m] for m in lookups})
    if pending.get(UNION_MATCHED):
        state, seconds, steps = _union_matched(exp, lm, seed_run, fold)
        for target in pending[UNION_MATCHED]:
            _write(exp, seed_run, target, UNION_MATCHED, state, MethodCost(seconds=seconds, labelled_target_examples=0),
                   {"steps_after_union": steps})
        say(exp, f"fold {fold.name}: {UNION_MATCHED} ({steps} steps after union LoRA)")
    for target in pending.get(TARGET_FINETUNED, []):
        if exp.ceiling == "trajectory":
            _target_finetuned(exp, seed_run, target)
        else:
            _target_own_lora(exp, lm, seed_run, target)


def _write(exp: Experiment, seed_run: SeedRun, target: str, method: str, state: LoraState, cost: MethodCost,
           info: dict) -> None:
    directory = seed_run.method(target, method)
    write_adapter(state, exp.lora, exp.model.name, directory.output, info={**info, "seconds": cost.seconds})
    cost.save(directory.cost)


def _mean_and_retrieval(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold,
                        pending: dict[str, list[str]]) -> None:
    """The mean adapter, the retrieval mixture and its prompt controls for the targets each is `pending` for."""
    from ..data.prompts import task_items
    from ..generator.controls import control_prompts
    from ..generator.dataset import average_states
    from ..generator.encoder import PromptEncoder
    from ..generator.floors import task_adapters
    from ..generator.retrieval import RetrievalLibrary

    started = time.perf_counter()
    sources = exp.trained_on(fold).training
    training = [task_label(t) for t in sources]
    adapters = task_adapters(seed_run.trajectories, training)
    if pending.get(MEAN):
        mean = average_states(list(adapters.values()))
        cost = MethodCost(seconds=time.perf_counter() - started, labelled_target_examples=0)
        for target in pending[MEAN]:
            _write(exp, seed_run, target, MEAN, mean, cost, {"tasks": training})
        say(exp, f"fold {fold.name}: {MEAN} adapter of {len(training)} tasks")
    mixtures = [(m, c) for m, c in {RETRIEVAL: None, **exp.controls_of(RETRIEVAL)}.items() if pending.get(m)]
    if not mixtures:
        return
    g = exp.generator

    def prompts(task: str, limit: int) -> list[str]:
        return [it.prompt for it in task_items(task, "train", exp.partition)[:limit]]

    library = RetrievalLibrary({task_label(t): (prompts(t, g.max_prompts), adapters[task_label(t)]) for t in sources},
                               PromptEncoder.with_default_cache(g.encoder, g.prompt_tokens))

    def adaptation_prompts(task: str) -> list[str]:  # what DeGAML reads of a task
        return prompts(task, exp.policy.adaptation_prompts)

    for method, control in mixtures:
        for target in pending[method]:
            started = time.perf_counter()
            source, read = (target, adaptation_prompts(target)) if control is None else control_prompts(
                control, target, exp.targets, adaptation_prompts, lm.tokenizer, seed_run.seed)
            mixed, weights = library.mixture(read)
            _write(exp, seed_run, target, method, mixed,
                   MethodCost(seconds=time.perf_counter() - started, labelled_target_examples=0),
                   {"weights": weights, "prompts_from": source})
            say(exp, f"{target}: {method} adapter ({source}'s prompts)")


def _union_matched(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold) -> tuple[LoraState, float, int]:
    """The union LoRA the generator is residual on, continued on the fold's training tasks for the generator's
    optimizer steps (shared, then the fold's own) at the generator's examples per step (tasks per step x
    labelled examples per task). Cached per fold under a name derived from everything that determines it."""
    from safetensors.torch import load_file, save_file

    from ..baselines import prepare
    from ..baselines.union import UnionConfig, meta_train
    from .baseline_stage import baseline_setup, meta_trained
    from .generator_stage import residual_source

    g = exp.generator
    steps = exp.shared_generator_steps + (0 if exp.one_generator else g.steps)
    source, base_source = exp.trained_on(fold), residual_source(exp, fold)
    setup = replace(baseline_setup(exp, seed_run), batch_size=g.batch_size * g.task_examples)
    config = UnionConfig(steps=steps, lr=exp.baselines.union.lr)
    key = json.dumps({"setup": asdict(setup), "config": asdict(config), "tasks": list(source.training),
                      "base": list(base_source.training)}, sort_keys=True, default=str)
    cache = seed_run.baseline_cache(source.name, f"{UNION_MATCHED}-{hashlib.sha256(key.encode()).hexdigest()[:10]}")
    if (cache / "meta.json").is_file():
        return load_file(str(cache / "meta.safetensors")), MetaTraining.load(cache / "meta.json").seconds, steps
    started = time.perf_counter()
    base, record = meta_trained(exp, lm, seed_run, base_source, "union")
    job = prepare(setup, source.targets[0], list(source.training), needs_meta=True, lm=lm,
                  seen=exp.holdout == "seen")
    state = meta_train(job, config, exp.progress, init=base)
    seconds = time.perf_counter() - started + (record.seconds if record else 0.0)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / ".meta.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(cache / "meta.safetensors")
    MetaTraining(seconds, list(source.training), steps=steps).save(cache / "meta.json")
    return state, seconds, steps


def _target_finetuned(exp: Experiment, seed_run: SeedRun, target: str) -> None:
    from ..generator.floors import task_adapters, trajectory_manifests

    label = task_label(target)
    manifests = trajectory_manifests(seed_run.trajectories, label)
    if not manifests:
        raise FileNotFoundError(f"ceiling: trajectory needs {label}'s own trajectory under {seed_run.trajectories}, "
                                "which the collect stage writes for every target when the floor is asked for")
    state = task_adapters(seed_run.trajectories, [label])[label]
    _write(exp, seed_run, target, TARGET_FINETUNED, state,
           MethodCost(seconds=sum(m.train_seconds for m in manifests), ceiling=True,
                      labelled_target_examples=max(m.train_items for m in manifests)),
           {"trajectories": [m.task for m in manifests]})
    say(exp, f"{target}: {TARGET_FINETUNED} ceiling (its own labelled train partition)")


def _target_own_lora(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, target: str) -> None:
    """The ceiling as `degaml headroom` trains its own LoRA: from PEFT's init, `ceiling` steps of
    `baselines.batch_size` examples of the target's train partition (cycled where it has fewer)."""
    from ..baselines.common import load_examples
    from ..sft import fine_tune
    from .baseline_stage import baseline_setup

    started = time.perf_counter()
    setup = replace(baseline_setup(exp, seed_run), steps=exp.ceiling)
    examples = load_examples(lm, target, setup, setup.steps * setup.batch_size)
    state, losses = fine_tune(lm, setup.lora, examples, setup.steps, setup.lr, setup.batch_size, setup.seed)
    _write(exp, seed_run, target, TARGET_FINETUNED, state,
           MethodCost(seconds=time.perf_counter() - started, ceiling=True, labelled_target_examples=len(examples),
                      target_steps=setup.steps),
           {"steps": setup.steps, "losses": losses})
    say(exp, f"{target}: {TARGET_FINETUNED} ceiling ({setup.steps} steps on its own train partition)")
