"""The `degaml collect`, `train-generator` and `generate` commands (typed functions; `degaml/cli.py` is
the command table)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..config import DataConfig, LoraSettings, ModelConfig
from ..data.prompts import task_prompts
from .card import GeneratorTrainConfig


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
        lr: AdamW learning rate, constant over all steps (checkpoints of one trajectory share one rate).
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
    from ..generator.trajectories import CollectConfig, collect_tasks
    from ..models import load_model, process_state

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
    task_loss_kind: Literal["answer", "choice"] = "answer",
    anchor: float = 0.0,
    residual: bool = False,
    residual_base: str = "",
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
        task_loss_kind: `answer` (the gold answer's token cross-entropy) or `choice` (cross-entropy over
            each item's options, scored by mean answer-token log-likelihood) (task_loss, hybrid).
        anchor: Weight of the KL from the base model to the adapted one at the examples' context positions
            (task_loss, hybrid); 0: the answer loss alone.
        residual: Predict a change to a base adapter (the mean training adapter) instead of the adapter itself.
        residual_base: With residual, a PEFT adapter directory to start the base at instead of the mean
            training adapter (e.g. a union LoRA trained on the same tasks).
        stat_code: Token statistics code: `paper` (std: log(0.9 s + 0.1) + 1.6, mean: 8 m), `log` (std: log s)
            or `relative` (std: log s, mean: m / s).
        token_weighting: Reconstruction weights per token: `per_task` or `averaged` over training tasks.
        prompt_format: Conditioning prompts: `question`, or `with_options` ("A: ..." lines appended).
        init_from: A trained generator directory to start from (same decoder shapes), e.g. to continue
            meta-training on new tasks; empty: a fresh initialization.
        source: Where task prompts are read from.
        progress: Show progress bars.
    """
    from ..generator.training import train_on_trajectories

    config = GeneratorTrainConfig(decoder=decoder, encoder=encoder, num_prompts=num_prompts,
                                  prompt_tokens=prompt_tokens, max_prompts=max_prompts, chunk=chunk, steps=steps,
                                  batch_size=batch_size, lr=lr, weight_decay=weight_decay, eval_every=eval_every,
                                  seed=seed, objective=objective, task_loss_weight=task_loss_weight,
                                  task_examples=task_examples, max_tokens=max_tokens, task_loss_kind=task_loss_kind,
                                  anchor=anchor, residual=residual, residual_base=residual_base,
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
    from .generation import Generator

    gen = Generator(generator, device)
    if prompts.endswith(".txt"):
        texts = [line for line in Path(prompts).read_text().splitlines() if line.strip()]
    else:
        texts = task_prompts(prompts, split, partition_seed, validation_fraction, test_fraction, source,
                             gen.prompt_format)
    info = gen.generate_checked(texts, Path(out), seed)
    note = " (fewer prompts than the generator's N: sampled with replacement)" if info["sampled_with_replacement"] else ""
    print(f"adapter: {out}\ngenerated in {info['generation_seconds']:.3f} s (prompt encoding "
          f"{info['encode_seconds']:.3f} s, decoder {info['decode_seconds']:.3f} s) from "
          f"{info['prompts_used']} of {info['prompts_given']} prompts{note}")
