"""The `degaml adapt`, `train-policy` and `evaluate` commands (typed functions; `degaml/cli.py` is the command
table). `evaluate` is here because it scores every adapted output, the per-sample latent ones included, whose
scorer is this layer's; the Python API (`degaml.api`) does the same work as functions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from ..config import DataConfig, EvalConfig, ModelConfig, PartitionConfig, task_names
from ..data.prompts import task_items
from ..data.tasks import check_task_names, task_label
from ..io import check_output_path, check_replaceable, claim_directory, exclusive_output


def load_for_adaptation(generator: Path, model: ModelConfig | None):
    """The generator and its base model (the one its record names, unless `model` names another), both on the
    model's device."""
    from dataclasses import replace

    from ..generator.generation import Generator
    from ..models import load_model

    gen = Generator(generator)
    model = model or ModelConfig()
    lm = load_model(replace(model, name=gen.record.model) if model.name == ModelConfig().name else model)
    gen.decoder.to(lm.device)
    return gen, lm


def adapt(
    generator: Path,
    task: str,
    out: Path,
    action: str = "none",
    policy: Path | None = None,
    adaptation_prompts: int = 32,
    prompt_split: Literal["train", "validation", "test"] = "train",
    partition: PartitionConfig | None = None,
    seed: int = 0,
    model: ModelConfig | None = None,
) -> None:
    """Generate a task's adapter from its unlabelled prompts and refine it with one adaptation family.

    The family and its settings are chosen by hand (`--action`) or by a trained policy (`--policy`).

    The generator is only run forward; adaptation never updates it. Writes a directory that
    `degaml evaluate --adapter` scores: a PEFT adapter (none, ttt, mixing), an adapter with a latent delta
    or per-sample SLOT settings (latent), or an ensemble of K adapters (tts).

    Args:
        generator: Directory written by `degaml train-generator`.
        task: Task name or .json/.jsonl file (only its prompts are read, never its answers).
        out: Output directory.
        action: A family and its hyper-parameters, e.g. "none", "ttt steps=5 lr=1e-4",
            "mixing variant=rank_half lam=0.75", "mixing variant=prompt_perplexity evaluations=40",
            "latent steps=3 scope=sample", "tts k=3 combine=confidence". Unnamed hyper-parameters take the
            family's defaults; out-of-range ones are refused with the valid range.
        policy: A directory written by `degaml train-policy`; replaces `action`.
        adaptation_prompts: Unlabelled prompts used by ttt / latent / prompt-perplexity mixing (seeded order of the partition).
        prompt_split: Partition whose prompts are used.
        partition: Where the task is read from and its train/validation/test partition.
        seed: Seed of the prompt sample and of TTT's batches.
        model: The base model's dtype and device (its name defaults to the generator's).
    """
    from ..adaptation.actions import Action
    from ..adaptation.policy import load_policy
    from ..adaptation.task_setup import adapt_task, adaptation_context, uses_library

    chosen = None if policy else Action.parse(action)
    check_replaceable(check_output_path(out))
    items = task_items(task, prompt_split, partition or PartitionConfig())[:adaptation_prompts]  # before loading
    gen, lm = load_for_adaptation(generator, model)
    ctx = adaptation_context(gen, lm, task_label(task), items, seed, with_library=uses_library(chosen))
    with exclusive_output(out):
        result = adapt_task(gen, ctx, Path(out), chosen, load_policy(policy) if policy else None)
    if result.scores is not None:
        print("policy scores (probability per action):")
        for label, p in sorted(result.scores.items(), key=lambda kv: -kv[1]):
            print(f"  {p:6.3f}  {label}{'   <- chosen' if label == result.action.label else ''}")
    done = result.refinement
    fallback = f" - fell back to the generated adapter: {done.reason}" if done.fell_back else ""
    print(f"{result.action.label}: {out} ({done.seconds:.2f} s){fallback}")


def train_policy(
    generator: Path,
    tasks: list[str] | str,
    out: Path,
    algorithm: Literal["reinforce", "rest_em"] = "reinforce",
    epochs: int = 300,
    lr: float = 0.05,
    cost_penalty: float = 0.0,
    limit: int | None = 50,
    adaptation_prompts: int = 32,
    partition: PartitionConfig | None = None,
    seed: int = 0,
    model: ModelConfig | None = None,
    progress: bool = True,
) -> None:
    """Train the adaptation policy on the validation rewards of reward tasks.

    Every action of the default action space is applied to each task's generated adapter and scored on the
    task's *validation* partition; the reward is the gain over the generated adapter (minus `cost_penalty` x
    the action's cost).

    Rewards are appended to `out/rewards.jsonl` as they are measured, so an interrupted run resumes.

    Args:
        generator: Directory written by `degaml train-generator`.
        tasks: Reward tasks (`--tasks a,b`; never the task the policy will serve). A task the generator
            held out gets the out-of-sample adapter a new task gets; a training task an in-sample one
            (policy.json lists those).
        out: Policy directory (policy.pt, policy.json, rewards.jsonl, rewards.md).
        algorithm: reinforce (policy gradient with a baseline) or rest_em (the reference's ReST^EM).
        epochs: Policy training epochs.
        lr: Policy learning rate.
        cost_penalty: Reward subtracted per unit of action cost.
        limit: Validation items per task (a seeded subset); null for all.
        adaptation_prompts: Unlabelled prompts given to each family (from the train partition).
        partition: Where tasks are read from and their train/validation/test partition.
        seed: Seed of prompt samples, TTT batches and policy training.
        model: The base model's dtype and device (its name defaults to the generator's).
        progress: Show progress bars.
    """
    from ..adaptation.actions import default_actions
    from ..adaptation.policy import PolicyConfig
    from ..adaptation.policy_training import fit_policy_on_tasks
    from ..adaptation.rewards import format_reward_table

    config = PolicyConfig(algorithm=algorithm, epochs=epochs, lr=lr, cost_penalty=cost_penalty, seed=seed)
    actions = default_actions()
    check_task_names(task_names(tasks), "--tasks")  # before the model loads
    claim_directory(out, ("rewards.jsonl", "policy.json"))
    gen, lm = load_for_adaptation(generator, model)
    data = DataConfig(tasks=[], limit=limit, partition=partition or PartitionConfig())
    with exclusive_output(out, replaced=False):  # rewards.jsonl grows as rewards are measured: one writer
        _, table, choices = fit_policy_on_tasks([(t, gen.directory) for t in task_names(tasks)], lm, actions, config,
                                                Path(out), data, adaptation_prompts, progress)
    print(format_reward_table(table, actions))
    for task, choice in choices.items():
        print(f"policy on {task}: {choice}")
    print(f"policy: {out}")


def evaluate(
    model: ModelConfig | None = None,
    data: DataConfig | None = None,
    evaluation: EvalConfig | None = None,
    adapter: Path | None = None,
    out: Path | None = None,
    progress: bool = True,
) -> None:
    """Score a model (optionally with a PEFT LoRA adapter) on tasks and print a table of accuracies.

    Writes results.json (config, seed, versions, the dtype and why, partitions, per-item predictions),
    config.yaml, partitions.json and results.md under `out`.

    Args:
        model: The model (`--model.name`: a short name of `degaml list-models`, a hub id or a local directory), its
            dtype (`auto`: bfloat16 where the hardware computes it natively, else float32) and device.
        data: Tasks (`--data.tasks a,b`: names of `degaml list-tasks` or .json/.jsonl files), the part of their
            partition, the items per task (the first of the partition's seeded order; null for all) and the
            partition itself (`--data.partition.seed`, `--data.partition.source`).
        evaluation: `--evaluation.protocol` loglikelihood (acc and acc_norm as lm-evaluation-harness) or
            generative (the paper's), batch size, generated tokens.
        adapter: A PEFT adapter directory, or any directory `degaml adapt` wrote (latent delta, TTS ensemble).
        out: Output directory; default runs/evaluate/<time>.
        progress: Show progress bars.
    """
    from ..evaluation import format_table
    from ..evaluation.harness import write_evaluation
    from ..evaluation.output_scoring import evaluate_adapted
    from ..models import load_model
    from ..models.lora import adapter_base_record
    from .latent import per_sample_scorer

    model, data, evaluation = model or ModelConfig(), data or DataConfig(), evaluation or EvalConfig()
    config = {"model": model, "data": data, "eval": evaluation, "adapter": adapter}
    out = out or Path("runs") / "evaluate" / datetime.now().strftime("%Y%m%d-%H%M%S")

    check_task_names(task_names(data.tasks), "--data.tasks")  # before the model loads
    with exclusive_output(out, replaced=False):  # checked and locked before any scoring; results merge into `out`
        claim_directory(out, ("results.json", "partitions.json"))
        lm = load_model(model)
        results, partitions = evaluate_adapted(lm, adapter, data, evaluation, progress=progress,
                                               item_scorer=per_sample_scorer)
        header = (f"model: {model.name} ({lm.source}, {lm.precision.dtype})"
                  + (f" + adapter {adapter}" if adapter else "") + f" | protocol: {evaluation.protocol} | split: "
                  f"{data.split} | limit: {data.limit} | partition seed: {data.partition.seed}")
        mismatch = adapter_base_record(adapter, lm.model) if adapter else None
        paths = write_evaluation(out, results, partitions, config, header, data.partition.seed, lm, mismatch)
    print(header, format_table(results), f"results: {paths['results']}", sep="\n\n")
