"""The baselines of each fold: meta-training cached per fold (named by what determines it), then each
target's finish, with its cost."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ..io import cache_root, exclusive_directory, link_copy
from ..memory import peak_memory_mb, reset_peak_memory
from ..models import LoadedModel
from .experiment import Experiment, Fold, say
from .layout import SeedRun
from .records import MetaTraining, MethodCost


def baseline_setup(exp: Experiment, seed_run: SeedRun):
    from ..baselines import BaselineSetup

    b = exp.baselines
    return BaselineSetup(model=exp.model, lora=exp.lora, support=b.support, steps=b.steps, lr=b.lr,
                         batch_size=b.batch_size, meta_examples=b.meta_examples, max_tokens=b.max_tokens, seed=seed_run.seed,
                         partition=exp.partition, answer_format=exp.answer_format)


def baseline_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold) -> None:
    from ..baselines import METHODS, prepare
    from ..baselines.common import BaselineRecord

    b = exp.baselines
    setup = baseline_setup(exp, seed_run)
    for method in b.methods:
        if method not in METHODS:
            raise ValueError(f"baselines.methods: unknown method {method!r}; valid: {', '.join(METHODS)}")
        spec, config = METHODS[method], _method_config(exp, method)
        pending = [t for t in fold.targets if not seed_run.method(t, method).cost.is_file()]
        if not pending:
            continue
        meta, record = meta_trained(exp, lm, seed_run, exp.trained_on(fold), method)
        meta_seconds = record.seconds if record else 0.0
        for target in pending:
            job = prepare(setup, target, [], needs_meta=False, lm=lm)
            job.log.update(record.as_log() if record else {})
            reset_peak_memory(lm.device)
            started = time.perf_counter()
            directory = seed_run.method(target, method)
            made = BaselineRecord.from_info(spec.module.finish(job, config, meta, directory.output, started),
                                           str(directory.output))
            seconds = time.perf_counter() - started + meta_seconds
            peak = peak_memory_mb(lm.device)  # the larger of meta-training's and this target's
            peak["peak_rss_mb"] = max(peak["peak_rss_mb"], record.peak_rss_mb if record else 0.0)
            MethodCost(seconds=seconds, labelled_target_examples=made.support_examples, target_steps=made.target_steps,
                       meta_train_seconds=meta_seconds, **peak).save(directory.cost)
            say(exp, f"{target}: {method} ({seconds:.1f} s with meta-training)")


def meta_trained(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, source: Fold, method: str
                 ) -> tuple[dict, MetaTraining | None]:
    """`method`'s meta-training on `source.training` (for a fold's baselines, `Experiment.trained_on(fold)`),
    from its cache or computed and cached. The cache is named by what determines it (`Method.meta_key`):
    union and union-finetune with the same settings share one, folds that train on the same tasks share it,
    and so does a generator whose residual base is union LoRA (`generator.residual_base: union`). Each is
    computed once per machine, in `<cache_root>/meta_training/`, and hard-linked into every run that asks for it."""
    from ..baselines import METHODS

    spec = METHODS[method]
    if not spec.meta_trains:
        return {}, None
    setup, config = baseline_setup(exp, seed_run), _method_config(exp, method)
    key = spec.meta_key(config, setup)
    cache = seed_run.baseline_cache(source.name, key)
    if not (cache / "meta.json").is_file():
        # Across runs: the same meta-training on the same tasks, model weights and dtype is computed once.
        shared = _shared_meta_cache(key, source, lm)
        with exclusive_directory(shared):
            if not (shared / "meta.json").is_file():  # another process may have finished it meanwhile
                _meta_train(exp, lm, spec, setup, config, source, shared)
        with exclusive_directory(cache):
            link_copy(shared, cache, "meta.json")
    return load_file(str(cache / "meta.safetensors")), MetaTraining.load(cache / "meta.json")


def _shared_meta_cache(key: str, source: Fold, lm: LoadedModel) -> Path:
    determining = json.dumps({"tasks": list(source.training), "dtype": lm.precision.dtype, "weights": lm.source})
    return cache_root() / "meta_training" / f"{key}-{hashlib.sha256(determining.encode()).hexdigest()[:12]}"


def _meta_train(exp: Experiment, lm: LoadedModel, spec, setup, config, source: Fold, cache: Path) -> None:
    from ..baselines import prepare

    job = prepare(setup, source.targets[0], list(source.training), needs_meta=True, lm=lm,
                  seen=exp.holdout == "seen")
    reset_peak_memory(lm.device)
    start = time.perf_counter()
    meta = spec.module.meta_train(job, config, exp.progress)
    record = MetaTraining(time.perf_counter() - start, list(source.training), peak_memory_mb(lm.device)["peak_rss_mb"],
                          log=job.log)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / ".meta.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in meta.items()}, str(tmp))
    tmp.replace(cache / "meta.safetensors")
    record.save(cache / "meta.json")


def _method_config(exp: Experiment, method: str) -> Any:
    """A baseline's own settings section (`baselines.union`, ...), or its defaults when it has none."""
    from ..baselines import METHODS

    spec = METHODS[method]
    return getattr(exp.baselines, spec.option, None) or spec.config()
