"""Evaluate a model (optionally with an adapter) on tasks' partitions and write the results."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import DataConfig, EvalConfig
from ..data import MultipleChoiceItem
from ..data.prompts import load_partitioned
from ..data.splits import Partition
from ..models import LoadedModel
from .generative import generate_answers
from .loglikelihood import ChoiceScore, LoglikelihoodScorer
from .metrics import Prediction, mean_and_stderr, predict_acc, predict_acc_norm, prediction_correctness

ScoreFn = Callable[[Sequence[MultipleChoiceItem], bool, str], list[list[ChoiceScore]]]
"""(items, progress, description) -> per item, per choice scores: replaces plain log-likelihood scoring
(per-sample latent adaptation fits a delta to each item before scoring it)."""


@dataclass
class TaskResult:
    task: str
    protocol: str
    split: str
    num_items: int
    metrics: dict[str, float]
    seconds: float
    predictions: list[Prediction] = field(repr=False)

    @property
    def items_per_second(self) -> float:
        return self.num_items / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"},
                "predictions": [p.to_dict() for p in self.predictions], "items_per_second": self.items_per_second}

    def correctness(self, metric: str) -> dict[str, float]:
        """{item id: 1.0 where the prediction under `metric` (acc or acc_norm) is the gold answer, else 0.0}."""
        return {p.id: p.correct(metric) for p in self.predictions}

    def majority_rate(self) -> float | None:
        """Share of the most frequent gold answer of a two-choice task (what a constant answer scores); None for
        other tasks."""
        if not self.predictions or self.predictions[0].options != 2:
            return None
        golds = [p.gold for p in self.predictions]
        return max(golds.count(g) for g in set(golds)) / len(golds)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TaskResult:
        return cls(**{k: v for k, v in record.items() if k not in ("items_per_second", "predictions")},
                   predictions=[Prediction.from_dict(p) for p in record["predictions"]])


def read_results(path: Path) -> list[TaskResult]:
    """The per-task results in a results.json that `write_evaluation` wrote, refused with the file at fault."""
    import json

    try:
        return [TaskResult.from_dict(r) for r in json.loads(Path(path).read_text(encoding="utf-8"))["results"]]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not an evaluation's results.json ({type(e).__name__}: {e})") from None


def normalization_texts(item: MultipleChoiceItem) -> tuple[str, ...]:
    """acc_norm divides by the length of the scored answer text: the choice for cloze items; for partial
    scoring (WinoGrande) the shared continuation, so that acc_norm equals acc there."""
    return item.choices if item.shares_context else item.continuations


def _loglikelihood_result(lm: LoadedModel, task: str, split: str, items: Sequence[MultipleChoiceItem],
                          config: EvalConfig, progress: bool, scorer: ScoreFn | None = None) -> TaskResult:
    start = time.perf_counter()
    score = scorer or LoglikelihoodScorer(lm, batch_size=config.batch_size, max_length=config.max_length).score
    scores = score(items, progress, task)
    seconds = time.perf_counter() - start
    predictions = []
    for item, item_scores in zip(items, scores):
        logprobs = [s.logprob for s in item_scores]
        if not all(math.isfinite(lp) for lp in logprobs):  # an argmax of NaNs is not a prediction
            raise FloatingPointError(f"task {task!r}, item {item.id!r}: non-finite log-likelihood {logprobs} "
                                     "(a broken adapter or model); no table is written")
        predictions.append(Prediction(item.id, item.gold, predict_acc(logprobs),
                                      predict_acc_norm(logprobs, normalization_texts(item)), logprobs))
    acc, acc_se = mean_and_stderr(prediction_correctness(predictions, "acc"))
    norm, norm_se = mean_and_stderr(prediction_correctness(predictions, "acc_norm"))
    metrics = {"acc": acc, "acc_stderr": acc_se, "acc_norm": norm, "acc_norm_stderr": norm_se}
    return TaskResult(task, "loglikelihood", split, len(items), metrics, seconds, predictions)


def _generative_result(lm: LoadedModel, task: str, split: str, items: Sequence[MultipleChoiceItem],
                       config: EvalConfig, progress: bool) -> TaskResult:
    start = time.perf_counter()
    answers = generate_answers(lm, items, batch_size=config.batch_size, max_new_tokens=config.max_new_tokens,
                               progress=progress, desc=task)
    seconds = time.perf_counter() - start
    predictions = [Prediction(it.id, it.gold, pred, output=text) for it, (text, pred) in zip(items, answers)]
    acc, acc_se = mean_and_stderr(prediction_correctness(predictions, "acc"))
    unparseable = sum(p.pred is None for p in predictions)
    metrics = {"acc": acc, "acc_stderr": acc_se, "unparseable": float(unparseable)}
    return TaskResult(task, "generative", split, len(items), metrics, seconds, predictions)


def evaluate_items(lm: LoadedModel, task: str, split: str, items: Sequence[MultipleChoiceItem],
                   config: EvalConfig, progress: bool = True, scorer: ScoreFn | None = None) -> TaskResult:
    if not items:
        raise ValueError(f"task {task!r}: no items to evaluate in split {split!r}")
    if config.protocol == "loglikelihood":
        return _loglikelihood_result(lm, task, split, items, config, progress, scorer)
    if scorer is not None:
        raise ValueError("this adapter needs per-item scoring: evaluate it with --protocol loglikelihood")
    return _generative_result(lm, task, split, items, config, progress)


def evaluate_tasks(lm: LoadedModel, data: DataConfig, config: EvalConfig, progress: bool = True,
                   loaded: dict[str, tuple[list[MultipleChoiceItem], Partition]] | None = None,
                   scorer: ScoreFn | None = None) -> tuple[list[TaskResult], dict[str, Partition]]:
    """`loaded`: the output of `load_partitioned(data)`, when the caller already has it."""
    results, partitions = [], {}
    for task, (items, part) in (loaded or load_partitioned(data)).items():
        selected = part.select(items, data.split, data.limit)
        results.append(evaluate_items(lm, task, data.split, selected, config, progress, scorer))
        partitions[task] = part
    return results, partitions


def format_table(results: Sequence[TaskResult]) -> str:
    """Markdown table: one row per task, plus the macro average."""
    loglik = all(r.protocol == "loglikelihood" for r in results)
    header = ["task", "n", "acc", "± se"] + (["acc_norm", "± se"] if loglik else ["unparseable"]) + ["items/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        m = r.metrics
        row = [r.task, str(r.num_items), f"{100 * m['acc']:.1f}", f"{100 * m['acc_stderr']:.1f}"]
        row += ([f"{100 * m['acc_norm']:.1f}", f"{100 * m['acc_norm_stderr']:.1f}"] if loglik
                else [str(int(m["unparseable"]))])
        lines.append("| " + " | ".join(row + [f"{r.items_per_second:.1f}"]) + " |")
    if len(results) > 1:
        avg = [sum(r.metrics[k] for r in results) / len(results) for k in ("acc", "acc_norm") if loglik or k == "acc"]
        row = ["average", str(sum(r.num_items for r in results)), f"{100 * avg[0]:.1f}", ""]
        row += [f"{100 * avg[1]:.1f}", ""] if loglik else [str(int(sum(r.metrics["unparseable"] for r in results)))]
        lines.append("| " + " | ".join(row + [""]) + " |")
    return "\n".join(lines)


def result_paths(out: Path) -> dict[str, Path]:
    return {"results": out / "results.json", "config": out / "config.yaml", "partitions": out / "partitions.json",
            "table": out / "results.md"}


def write_evaluation(out: Path, results: Sequence[TaskResult], partitions: dict[str, Partition], config: dict,
                     header: str, seed: int, lm: LoadedModel, adapter_base: dict | None = None) -> dict[str, Path]:
    """results.json (config, versions, partitions, per-item predictions), config.yaml, partitions.json and
    results.md under `out`, each written atomically; results.json last, so its presence means complete.
    `adapter_base`: the adapter's and the scored model's names when the adapter was written for another base
    model (`models.lora.adapter_base_record`)."""
    from ..config import dump_yaml
    from ..io import atomic_write_json, atomic_write_text, run_metadata

    paths = result_paths(out)
    atomic_write_text(paths["config"], dump_yaml(config))
    atomic_write_json(paths["partitions"], {t: {**p.summary(), "ids": p.ids} for t, p in partitions.items()})
    atomic_write_text(paths["table"], f"{header}\n\n{format_table(results)}\n")
    atomic_write_json(paths["results"], {
        "config": dump_yaml(config), "meta": run_metadata(seed, lm.compute()), "model_source": lm.source, "header": header,
        "partitions": {t: p.summary() for t, p in partitions.items()},
        **({"adapter_base_model_mismatch": adapter_base} if adapter_base else {}),
        "results": [r.to_dict() for r in results],
    })
    return paths
