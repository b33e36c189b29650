"""The evaluation stage: every method's test scores on every target, the only stage that reads test
partitions (once, after everything is trained). Scores are kept per machine (`score_cache`), so the floors
that several runs share are scored once."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import EvalConfig
from ..evaluation.harness import read_results
from ..io import atomic_write_json, cache_root, key_fields
from ..models import AdaptedOutput, LoadedModel
from ..models.adapted_output import LOGLIKELIHOOD_ONLY
from .degaml_stage import single_methods
from .experiment import Experiment, Fold, say, split_data
from .layout import (
    BASE,
    CALIBRATED,
    DEGAML,
    DEGAML_K,
    GENERATED,
    LOGLIKELIHOOD,
    ORACLE,
    SeedRun,
    policy_method,
    scaled_methods,
)
from .records import MethodCost


def scored_methods(exp: Experiment) -> tuple[str, ...]:
    """Every method the evaluation stage scores on each target (each also `-calibrated` when in
    `evaluation.calibrated`), in the order it scores them."""
    return (BASE, *exp.floors, *exp.ceiling_methods, GENERATED, *exp.control_methods,
            *(m for k in exp.task_counts for m in scaled_methods(k)), DEGAML, *map(policy_method, exp.policy.compare),
            *single_methods(exp), ORACLE, DEGAML_K, *exp.baselines.methods)


def evaluation_stage(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, fold: Fold) -> None:
    """Scores of every method on every target's `evaluation.split` partition: the only stage that reads test
    partitions."""
    from ..adaptation.latent import per_sample_scorer
    from ..data.prompts import load_partitioned
    from ..evaluation.harness import write_evaluation
    from ..evaluation.output_scoring import evaluate_adapted

    e = exp.evaluation
    methods = scored_methods(exp)
    for target in fold.targets:
        data = split_data(exp, [target], e.split, e.limit)
        loaded = load_partitioned(data)
        for protocol in e.protocols:
            config = EvalConfig(protocol=protocol, batch_size=e.batch_size,
                                max_length=e.max_length if protocol == LOGLIKELIHOOD else None)
            scored: dict[str, tuple[str, Any]] = {}  # scoring digest -> (method, its results): one adapter, one pass
            for method in methods:
                directory = seed_run.method(target, method)
                if directory.results_for(protocol).is_file() or not e.scores(method, protocol):
                    continue
                adapter = None if method == BASE else directory.output
                output = AdaptedOutput.load(adapter) if adapter is not None else None
                if protocol != LOGLIKELIHOOD and output is not None and output.kind in LOGLIKELIHOOD_ONLY:
                    say(exp, f"{target}: {method} is a {output.kind} output, scored in the log-likelihood protocol only")
                    continue
                digest = "base model" if output is None else output.scoring_digest()
                record = {"method": method, "target": target, "data": data, "eval": config}
                if digest in scored:  # e.g. DeGAML's policy chose `none`: the generated adapter's very scores
                    record["scores_of"], (results, partitions) = scored[digest]
                else:
                    cache = score_cache(lm, digest, data, config)
                    if cache.is_file():  # another run scored these very weights on these very items
                        results, partitions = read_results(cache), {t: part for t, (_, part) in loaded.items()}
                        record["scores_from"] = str(cache)
                    else:
                        results, partitions = evaluate_adapted(lm, adapter, data, config, progress=exp.progress,
                                                               loaded=loaded, item_scorer=per_sample_scorer)
                        atomic_write_json(cache, {"results": [r.to_dict() for r in results]})
                    scored[digest] = (method, (results, partitions))
                header = (f"model: {exp.model.name} ({lm.precision.dtype}) | method: {method} | protocol: {protocol} | "
                          f"split: {e.split} | limit: {e.limit} | partition seed: {exp.partition.seed}")
                write_evaluation(directory.eval_for(protocol), results, partitions, record, header, exp.partition.seed,
                                 lm)
                if method == BASE and not directory.cost.is_file():
                    MethodCost(seconds=0.0, labelled_target_examples=0).save(directory.cost)
                say(exp, f"{target}: {method} scored in the {protocol} protocol "
                         f"({100 * results[0].metrics['acc']:.1f} acc)")
        for method in e.calibrated:
            _calibrated(exp, lm, seed_run, target, method, loaded)


def score_cache(lm: LoadedModel, digest: str, data: Any, config: EvalConfig) -> Path:
    """Where the scores of an adapted output (by its `scoring_digest`) on `data` are kept across runs: runs that
    share floors (the base model, union LoRA, the pool's mean adapter) score them once per machine. Keyed by the
    weights, dtype, items (tasks, split, limit, partition) and scoring settings, and degaml's version."""
    from ..io import package_versions

    determining = {"digest": digest, "data": asdict(data), "eval": key_fields(config), "weights": lm.source,
                   "dtype": lm.precision.dtype, "degaml": package_versions()["degaml"]}
    key = hashlib.sha256(json.dumps(determining, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_root() / "scores" / f"{key}.json"


def _calibrated(exp: Experiment, lm: LoadedModel, seed_run: SeedRun, target: str, method: str, loaded: dict) -> None:
    """`method`'s scores calibrated without labels (`evaluation/calibration.py`), as the method
    `<method>-calibrated`: its own predictions re-weighed, plus, for free-text options, those options scored
    after the domain premise under the same adapter."""
    import time

    from ..evaluation.calibration import calibrate, calibration_kind
    from ..evaluation.harness import write_evaluation
    from ..evaluation.output_scoring import applied_adapter

    e = exp.evaluation
    directory = seed_run.method(target, f"{method}{CALIBRATED}")
    if directory.results.is_file():
        return
    source = seed_run.method(target, method)
    (raw,) = read_results(source.results)
    ((items, part),) = loaded.values()
    selected = part.select(items, e.split, e.limit)
    started = time.perf_counter()
    # Only PMI scores again (the options after the domain premise), under the method's own adapter.
    adapter = None if method == BASE or calibration_kind(selected) != "pmi" else source.output
    if adapter is not None and AdaptedOutput.load(adapter).kind != "plain":
        raise ValueError(f"evaluation.calibrated: {method} wrote {AdaptedOutput.load(adapter).kind!r} output, "
                         "not a plain adapter; only plain adapters and the base model are calibrated")
    with applied_adapter(lm, adapter) if adapter is not None else nullcontext():
        result, kind = calibrate(lm, raw, selected, e.batch_size)
    record = {"method": f"{method}{CALIBRATED}", "target": target, "calibrated": method, "calibration": kind,
              "eval": {"protocol": e.protocol, "batch_size": e.batch_size}}
    header = (f"model: {exp.model.name} ({lm.precision.dtype}) | method: {method}, calibrated ({kind}) | split: {e.split} "
              f"| limit: {e.limit} | partition seed: {exp.partition.seed}")
    write_evaluation(directory.eval, [result], {task: part for task in loaded}, record, header, exp.partition.seed, lm)
    MethodCost(seconds=time.perf_counter() - started, labelled_target_examples=0).save(directory.cost)
    say(exp, f"{target}: {method} calibrated ({kind}: {100 * result.metrics['acc']:.1f} acc)")
