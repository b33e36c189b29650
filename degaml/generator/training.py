"""Generator training (DESIGN.md §2.5): prompts of a task -> that task's checkpoint tokens.

Each sample pairs a random checkpoint of a random training task with a fresh random draw of N of that
task's prompts. Loss: masked MSE weighted per token by checkpoint variance. Gaussian noise on the
condition and the target, AdamW with warm-up then cosine, gradient clipping, bf16 autocast on CUDA.
Known failure: collapse to the mean of the training checkpoints, so every evaluation logs the distance
of generated tokens to their own targets *and* to that mean, and the generated-vs-target norms.

Directory (`out`): config.json, decoder.safetensors, state.pt (optimizer, scheduler, RNG, step), log.jsonl.
Weights and state are written atomically at every checkpoint interval; a rerun resumes exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..io import atomic_write_json
from ..lora_tokens import TokenLayout
from .dataset import TaskTrajectory, weighted_masked_mse
from .decoder import NAMED_DECODERS, DecoderConfig, HyperConvDecoder
from .encoder import PromptEncoder


@dataclass
class GeneratorTrainConfig:
    decoder: str = "cpu-small"
    """A named decoder shape list (see degaml.generator.decoder.NAMED_DECODERS)."""
    encoder: str = "all-minilm-l6-v2"
    num_prompts: int = 16
    """N prompts per condition (reference: 128)."""
    prompt_tokens: int = 64
    """Encoder tokens kept per prompt (reference: 384)."""
    max_prompts: int = 512
    """Prompt pool per task: the first of its train partition in seeded order (conditions sample from it)."""
    chunk: int = 128
    steps: int = 400
    batch_size: int = 4
    lr: float = 1e-3
    """The reference uses 3e-5 for its 1.1 B decoder over 4000 steps; small CPU decoders train faster."""
    weight_decay: float = 0.1
    warmup_steps: int = 1
    grad_clip: float = 1.0
    condition_noise: float = 1e-4
    target_noise: float = 1e-5
    eval_every: int = 50
    seed: int = 0


def decoder_config(name: str) -> DecoderConfig:
    if name not in NAMED_DECODERS:
        raise ValueError(f"unknown decoder {name!r}; known: {', '.join(NAMED_DECODERS)}")
    return NAMED_DECODERS[name]


@dataclass
class Conditioned:
    """A task's trajectory with its prompts already encoded: (P, L, D)."""

    trajectory: TaskTrajectory
    prompt_states: torch.Tensor


def encode_tasks(trajectories: list[TaskTrajectory], encoder: PromptEncoder) -> list[Conditioned]:
    return [Conditioned(t, encoder.encode(t.prompts)) for t in trajectories]


def sample_prompts(count: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """N distinct prompt indices, or with replacement when the task has fewer than N prompts."""
    if count >= n:
        return torch.randperm(count, generator=generator)[:n]
    return torch.randint(count, (n,), generator=generator)


def _distances(decoder: HyperConvDecoder, task: Conditioned, mask: torch.Tensor, train_mean: torch.Tensor,
               n: int, generator: torch.Generator) -> dict[str, float]:
    condition = task.prompt_states[sample_prompts(len(task.prompt_states), n, generator)][None]
    with torch.no_grad():
        generated = decoder(condition)[0]
    targets = task.trajectory.tokens

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b) ** 2 * mask).sum() / mask.sum())

    return {
        "loss": float(weighted_masked_mse(generated.expand_as(targets), targets, mask,
                                          task.trajectory.weights.expand(len(targets), -1))),
        "mse_to_own_checkpoints": sum(mse(generated, t) for t in targets) / len(targets),
        "mse_to_own_mean": mse(generated, task.trajectory.mean_tokens),
        "mse_to_training_mean": mse(generated, train_mean),
        "generated_norm": float((generated * mask).norm()),
        "target_norm": float((task.trajectory.mean_tokens * mask).norm()),
    }


def train_generator(train: list[Conditioned], heldout: list[Conditioned], layout: TokenLayout,
                    config: GeneratorTrainConfig, out: Path, meta: dict, progress: bool = True) -> HyperConvDecoder:
    if not train:
        raise ValueError("no training tasks: the generator needs at least one task's trajectory")
    out.mkdir(parents=True, exist_ok=True)
    condition_shape = (config.num_prompts, config.prompt_tokens, train[0].prompt_states.shape[-1])
    token_shape = (layout.num_tokens, *layout.token_shape)
    torch.manual_seed(config.seed)  # the decoder's init
    decoder = HyperConvDecoder(decoder_config(config.decoder), condition_shape, token_shape)
    atomic_write_json(out / "config.json", {
        "train": asdict(config), "decoder_shapes": decoder.shapes, "kernel_size": decoder.config.kernel_size,
        "parameters": sum(p.numel() for p in decoder.parameters()),
        "train_tasks": [t.trajectory.task for t in train], "heldout_tasks": [t.trajectory.task for t in heldout],
        "prompts_with_replacement": [t.trajectory.task for t in train if len(t.prompt_states) < config.num_prompts],
        **meta,
    })
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    sampler = torch.Generator().manual_seed(config.seed)
    start = _resume(decoder, optimizer, scheduler, sampler, out)

    mask = layout.padding_mask().float()
    train_mean = torch.stack([t.trajectory.mean_tokens for t in train]).mean(0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if torch.cuda.is_available() else nullcontext()
    bar = tqdm(range(start, config.steps), desc="train generator", initial=start, total=config.steps,
               disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        picks = [train[int(torch.randint(len(train), (1,), generator=sampler))] for _ in range(config.batch_size)]
        conditions, targets, weights = [], [], []
        for task in picks:
            traj = task.trajectory
            conditions.append(task.prompt_states[sample_prompts(len(task.prompt_states), config.num_prompts, sampler)])
            targets.append(traj.tokens[int(torch.randint(len(traj.tokens), (1,), generator=sampler))])
            weights.append(traj.weights)
        condition = torch.stack(conditions)
        target = torch.stack(targets)
        condition = condition + config.condition_noise * torch.randn(condition.shape, generator=sampler)
        target = target + config.target_noise * torch.randn(target.shape, generator=sampler)
        decoder.train()
        with autocast:
            prediction = decoder(condition)
        loss = weighted_masked_mse(prediction.float(), target, mask, torch.stack(weights))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite generator loss at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(decoder.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        record = {"step": done, "train_loss": loss.item(), "grad_norm": float(grad_norm),
                  "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        if done % config.eval_every == 0 or done == config.steps:
            decoder.eval()
            probe = torch.Generator().manual_seed(config.seed + 1)  # the same prompts at every evaluation
            for group, tasks in (("train", train), ("heldout", heldout)):
                for task in tasks:
                    for key, value in _distances(decoder, task, mask, train_mean, config.num_prompts, probe).items():
                        record[f"{group}/{task.trajectory.task}/{key}"] = value
            _save(decoder, optimizer, scheduler, sampler, done, out)
            bar.write(_summary(record))
        with (out / "log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return decoder


def _resume(decoder: HyperConvDecoder, optimizer, scheduler, sampler: torch.Generator, out: Path) -> int:
    """Restore the last saved step (weights, optimizer, scheduler, sampler); drop log lines past it."""
    state_path, weights_path = out / "state.pt", out / "decoder.safetensors"
    if not (state_path.is_file() and weights_path.is_file()):
        (out / "log.jsonl").unlink(missing_ok=True)
        return 0
    state = torch.load(state_path, weights_only=False)
    decoder.load_state_dict(load_file(str(weights_path)))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.set_state(state["sampler"])
    log = out / "log.jsonl"
    if log.is_file():
        kept = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= state["step"]]
        log.write_text("".join(line + "\n" for line in kept))
    return state["step"]


def _summary(record: dict) -> str:
    parts = [f"step {record['step']}", f"train loss {record['train_loss']:.4f}"]
    for key, value in record.items():
        if key.endswith(("/loss", "/mse_to_own_mean", "/mse_to_training_mean", "/generated_norm", "/target_norm")) \
                and not math.isnan(value):
            parts.append(f"{key} {value:.4f}")
    return " | ".join(parts)


def _save(decoder: HyperConvDecoder, optimizer, scheduler, sampler: torch.Generator, step: int, out: Path) -> None:
    tmp_weights = out / ".decoder.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(tmp_weights))
    tmp_state = out / ".state.pt.tmp"
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "sampler": sampler.get_state(), "step": step}, tmp_state)
    tmp_weights.replace(out / "decoder.safetensors")
    tmp_state.replace(out / "state.pt")


def train_on_trajectories(trajectories: Path, out: Path, holdout: Sequence[str], config: GeneratorTrainConfig,
                          source: str = "offline", progress: bool = True) -> Path:
    """Train a generator on every trajectory under `trajectories` except the `holdout` tasks' (those are
    only logged). Resumes from `out`; returns at once when `out` is finished."""
    from ..data.prompts import task_prompts
    from ..models import LoraGeometry
    from .dataset import load_trajectory
    from .trajectories import read_manifest

    task_dirs = sorted(p for p in Path(trajectories).iterdir() if p.is_dir()) if Path(trajectories).is_dir() else []
    if not task_dirs:
        raise FileNotFoundError(f"{trajectories} holds no task trajectories (run `degaml collect` first)")
    manifests = {d: read_manifest(d) for d in task_dirs}
    geometries = {json.dumps(m["partition"]["geometry"], sort_keys=True) for m in manifests.values()}
    if len(geometries) != 1:
        raise ValueError(f"trajectories in {trajectories} come from models or LoRA settings of different geometry")
    first = next(iter(manifests.values()))
    layout = TokenLayout.from_geometry(LoraGeometry.from_dict(first["partition"]["geometry"]), config.chunk)
    held = set(holdout)
    unknown = held - {m["task"] for m in manifests.values()}
    if unknown:
        print(f"note: held-out task(s) {sorted(unknown)} have no trajectory; they are simply not trained on")
    prompt_encoder = PromptEncoder.with_default_cache(config.encoder, config.prompt_tokens)
    train, heldout = [], []
    for task_dir, manifest in manifests.items():
        spec = manifest["partition"]
        prompts = task_prompts(spec["task_source"], "train", spec["seed"], spec["validation_fraction"],
                               spec["test_fraction"], source)[:config.max_prompts]
        (heldout if manifest["task"] in held else train).append(load_trajectory(task_dir, layout, prompts))
    meta = {"model": first["partition"]["model"], "lora": first["lora"], "geometry": first["partition"]["geometry"],
            "trajectories": str(Path(trajectories).resolve()), "max_prompts": config.max_prompts}
    train_generator(encode_tasks(train, prompt_encoder), encode_tasks(heldout, prompt_encoder), layout, config,
                    Path(out), meta, progress)
    return Path(out)
