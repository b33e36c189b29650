"""What the scoring benchmarks share: their options, the machine line every table starts with, a seeded
random adapter when none is given, our scorer timed on a task's items, and how far two scorings of the same
items agree (imported by eval_throughput, dtype_agreement, merged_scoring and kept_logits)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from degaml.config import IN_DOMAIN_TASKS, DataConfig
from degaml.data.prompts import load_partitioned
from degaml.evaluation import LoglikelihoodScorer, predict_acc, predict_acc_norm
from degaml.evaluation.harness import normalization_texts


def scoring_parser(doc: str) -> argparse.ArgumentParser:
    """The options every scoring benchmark takes: model, tasks, test items per task, batch size."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", default=",".join(IN_DOMAIN_TASKS))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    return parser


def machine_line(lm=None) -> str:
    """The CPU kind and threads (and the model's dtype and why) that every timing of a benchmark depends on."""
    from degaml.models.loading import cpu_kind

    line = f"CPU: {cpu_kind()}; {torch.get_num_threads()} torch threads"
    return line + (f"; model dtype {lm.precision.dtype} ({lm.precision.reason})" if lm is not None else "")


def random_adapter(model: str, out: Path, seed: int = 0, scale: float = 0.02) -> Path:
    """A LoRA (r 8, all seven projections) with seeded Gaussian A and B of std `scale`, about the size a trained
    adapter reaches, written as a PEFT adapter: what the adapter benchmarks score when given none."""
    from degaml.config import LoraSettings, ModelConfig
    from degaml.models import LoraGeometry, load_model, write_adapter

    lora = LoraSettings()
    geometry = LoraGeometry.from_model(load_model(ModelConfig(name=model, dtype="float32", device="cpu")).model, lora)
    generator = torch.Generator().manual_seed(seed)
    state = {f"base_model.model.{m.path}.lora_{part}.weight": scale * torch.randn(shape, generator=generator)
             for m in geometry.modules for part, shape in (("A", m.a_shape), ("B", m.b_shape))}
    return write_adapter(state, lora, model, out, info={"random": {"seed": seed, "scale": scale}})


def selected_test_items(tasks: str, limit: int) -> dict:
    """{task: its first `limit` test items} for comma-separated `tasks` (the partition evaluation uses)."""
    data = DataConfig(tasks=tasks.split(","), split="test", limit=limit)
    return {task: part.select(items, "test", limit) for task, (items, part) in load_partitioned(data).items()}


def timed_scores(lm, items, batch_size: int, max_length: int | None = None) -> tuple[list[list[float]], float]:
    """Per item, each choice's log-likelihood, and the seconds they took (after an untimed warm-up).
    `max_length`: the scoring window (None: the model's)."""
    scorer = LoglikelihoodScorer(lm, batch_size=batch_size, max_length=max_length)
    scorer.score(items[:2], progress=False)
    start = time.perf_counter()
    scores = [[s.logprob for s in row] for row in scorer.score(items, progress=False)]
    return scores, time.perf_counter() - start


def agreement(items, first: list[list[float]], second: list[list[float]]) -> tuple[int, int, float]:
    """Items with the same `acc` prediction, with the same `acc_norm` prediction, and the largest
    log-likelihood difference."""
    same_acc = sum(predict_acc(a) == predict_acc(b) for a, b in zip(first, second))
    same_norm = sum(predict_acc_norm(a, normalization_texts(it)) == predict_acc_norm(b, normalization_texts(it))
                    for a, b, it in zip(first, second, items))
    delta = max(abs(x - y) for a, b in zip(first, second) for x, y in zip(a, b))
    return same_acc, same_norm, delta


def print_comparison(tasks: dict, first: str, second: str, score_first, score_second) -> None:
    """A markdown table, per task and over all: agreement of two scorings of the same items and their items/s.
    `tasks`: {task: items}; `score_*`: items -> (scores, seconds); `second`'s speed-up is first s / second s."""
    print(f"| task | items | same acc preds | same acc_norm preds | max abs Δ loglik | {first} items/s "
          f"| {second} items/s | {second} speed-up |")
    print("|---" * 8 + "|")
    seconds = {first: 0.0, second: 0.0}
    for task, items in tasks.items():
        a, a_seconds = score_first(items)
        b, b_seconds = score_second(items)
        same_acc, same_norm, delta = agreement(items, a, b)
        n = len(items)
        seconds[first] += a_seconds
        seconds[second] += b_seconds
        print(f"| {task} | {n} | {same_acc}/{n} | {same_norm}/{n} | {delta:.2e} | {n / a_seconds:.1f} "
              f"| {n / b_seconds:.1f} | {a_seconds / b_seconds:.2f}x |", flush=True)
    n = sum(len(items) for items in tasks.values())
    print(f"| all | {n} | | | | {n / seconds[first]:.1f} | {n / seconds[second]:.1f} "
          f"| {seconds[first] / seconds[second]:.2f}x |")
