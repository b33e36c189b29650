"""The Python API: what the CLI's generate, adapt and evaluate commands do, as functions (docs/design.md).

    import degaml

    generator = degaml.load_generator("runs/offline-default/seed_0/folds/shared/generator")
    prompts = ["Which gas do plants take in?\nA: oxygen\nB: carbon dioxide", ...]  # unlabelled
    adapter = degaml.generate_lora(generator, prompts, "adapters/my-task")
    refined = degaml.adapt(generator, prompts, "adapters/my-task-ttt", action="ttt steps=5 lr=1e-4")
    scores = degaml.evaluate(refined, tasks="arc_easy", limit=50)

Every adapter directory written here is a PEFT adapter (`peft.PeftModel.from_pretrained` loads it) or an
adapted output that `evaluate` scores. A task name in place of the prompt list reads that task's unlabelled
train prompts, as the CLI does. The base model is loaded once per call unless `lm` is given: pass
`lm=degaml.load_model(...)` to share one across calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from .config import DataConfig, EvalConfig, ModelConfig, PartitionConfig

if TYPE_CHECKING:  # imported where used: `degaml evaluate --help` is built from this module without torch
    from .adaptation.actions import Action
    from .adaptation.task_setup import AdaptedTask
    from .generator.generation import Generator
    from .models import LoadedModel

Prompts = str | Sequence[str]
"""A task name or task file (its unlabelled train prompts are read), or the prompt strings themselves."""


def load_generator(directory: str | Path, device: str = "cpu") -> Generator:
    """A generator directory written by `degaml train-generator` (or `degaml run`)."""
    from .generator.generation import Generator

    return Generator(Path(directory), device)


def load_model(name: str = "smollm2-135m-instruct", dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """A base model: an offline default (`degaml list-models`), a hub id or a local directory."""
    from .models import load_model as _load_model

    return _load_model(ModelConfig(name=name, dtype=dtype, device=device))


def _prompt_texts(generator: Generator, prompts: Prompts, limit: int | None = None) -> list[str]:
    from .data.prompts import task_prompts

    if isinstance(prompts, str):
        return task_prompts(prompts, "train", prompt_format=generator.prompt_format)[:limit]
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a task name or a non-empty list of prompt strings")
    return list(prompts)[:limit]


def generate_lora(generator: Generator, prompts: Prompts, out: str | Path, seed: int = 0) -> Path:
    """The task's adapter from its unlabelled prompts in one forward pass, written as a PEFT adapter to `out`."""
    from .data import task_label

    task = task_label(prompts) if isinstance(prompts, str) else None
    generator.generate_checked(_prompt_texts(generator, prompts), Path(out), seed, task=task)
    return Path(out)


def adapt(generator: Generator, prompts: Prompts, out: str | Path, action: str | Action = "none",
          policy: str | Path | None = None, lm: LoadedModel | None = None, adaptation_prompts: int = 32,
          seed: int = 0) -> AdaptedTask:
    """Generate the task's adapter, then refine it with `action` (e.g. "ttt steps=5 lr=1e-4", see
    `degaml adapt --help`) or the action a trained `policy` chooses; the generator is never updated.
    Returns what was done (action, record, the policy's scores); it is path-like: the output directory,
    an adapted output that `evaluate` scores."""
    from .adaptation.actions import Action
    from .adaptation.policy import load_policy
    from .adaptation.task_setup import adapt_task, adaptation_context, context_from_prompts, uses_library
    from .data import task_label
    from .data.prompts import task_items

    chosen = None if policy is not None else (action if isinstance(action, Action) else Action.parse(action))
    lm = lm or load_model(generator.record.model)
    if isinstance(prompts, str):
        items = task_items(prompts, "train")[:adaptation_prompts]
        ctx = adaptation_context(generator, lm, task_label(prompts), items, seed, with_library=uses_library(chosen))
    else:
        texts = _prompt_texts(generator, prompts, adaptation_prompts)
        ctx = context_from_prompts(generator, lm, "", texts, texts, seed, with_library=uses_library(chosen))
    return adapt_task(generator, ctx, Path(out), chosen, load_policy(Path(policy)) if policy is not None else None)


def evaluate(adapter: str | PathLike | None, tasks: str | Sequence[str], limit: int | None = 200,
             split: str = "test", lm: LoadedModel | None = None, protocol: str = "loglikelihood",
             partition_seed: int = 0) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} of an adapted output (None: the bare base model, then give `lm`) on the
    tasks' `split`, log-likelihood protocol by default. The base model is the one the adapter names."""
    from .adaptation.latent import per_sample_scorer
    from .evaluation.output_scoring import evaluate_adapted
    from .models import AdaptedOutput

    if lm is None:
        if adapter is None:
            raise ValueError("evaluating the bare base model needs lm=degaml.load_model(...)")
        lm = load_model(AdaptedOutput.load(Path(adapter)).base_model)

    names = [tasks] if isinstance(tasks, str) else list(tasks)
    data = DataConfig(tasks=names, split=split, limit=limit, partition=PartitionConfig(seed=partition_seed))
    results, _ = evaluate_adapted(lm, Path(adapter) if adapter is not None else None, data,
                                  EvalConfig(protocol=protocol), progress=False, item_scorer=per_sample_scorer)
    return {r.task: dict(r.metrics) for r in results}
