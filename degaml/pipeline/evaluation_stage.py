"""The evaluation stage: every method's test scores on every target, the only stage that reads test
partitions (once, after everything is trained)."""

from __future__ import annotations

from typing import Any

from ..config import EvalConfig
from ..models import AdaptedOutput, LoadedModel
from .experiment import Experiment, Fold, say, split_data
from .layout import BASE, DEGAML, DEGAML_K, GENERATED, ORACLE, SeedRun
from .records import MethodCost


def evaluation_stage(exp: Experiment, lm: LoadedModel, run: SeedRun, fold: Fold) -> None:
    """Test scores of every method on every target: the only stage that reads test partitions."""
    from ..adaptation.latent import per_sample_scorer
    from ..data.prompts import load_partitioned
    from ..evaluation.harness import write_evaluation
    from ..evaluation.output_scoring import evaluate_adapted

    e = exp.evaluation
    config = EvalConfig(protocol=e.protocol, batch_size=e.batch_size)
    for target in fold.targets:
        data = split_data(exp, [target], "test", e.limit)
        loaded = load_partitioned(data)
        scored: dict[str, tuple[str, Any]] = {}  # scoring digest -> (method, its results): one adapter, one pass
        for method in (BASE, *exp.floors, GENERATED, DEGAML, ORACLE, DEGAML_K, *exp.baselines.methods):
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
            header = (f"model: {exp.model.name} ({lm.precision.dtype}) | method: {method} | protocol: {e.protocol} | "
                      f"split: test | limit: {e.limit} | partition seed: {exp.partition.seed}")
            write_evaluation(directory.eval, results, partitions, record, header, exp.partition.seed, lm)
            if method == BASE:
                MethodCost(seconds=0.0, labelled_target_examples=0).save(directory.cost)
            say(exp, f"{target}: {method} scored ({100 * results[0].metrics['acc']:.1f} acc)")
