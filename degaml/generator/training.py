"""Generator training (docs/design.md): prompts of a task -> an adapter for that task.

Each sample pairs a random training task with a fresh random draw of N of its prompts. Three objectives:

- `reconstruction` (the paper): masked MSE to a random checkpoint of the task's trajectory, weighted per
  token by checkpoint variance (per task, or averaged over the training tasks as the reference does);
- `task_loss` (function space, as Text-to-LoRA's SFT mode): the base model's causal-LM loss on the answers
  of labelled train examples of the sampled task, with the generated adapter applied through
  `torch.func.functional_call`, back-propagated through detokenization into the decoder;
- `hybrid`: reconstruction + task_loss_weight * task_loss.

With `contrast` > 0 the task loss gains a prompt-contrast term: each sample's examples are also scored under an
adapter generated from another training task's prompts, which must do worse by a margin (`_contrast`).

Gaussian noise on the condition and the target, AdamW with warm-up then cosine, gradient clipping, bf16
autocast on CUDA. Known failure: collapse to the mean of the training checkpoints, so every evaluation logs
the distance of generated tokens to their own targets *and* to that mean, the generated-vs-target norms,
and the task-dependence diagnostics of `diagnostics.py` (variance ratio, nearest-centroid accuracy, dW
cosines to the task's own adapter and to the mean adapter).

Data parallel under `accelerate launch` (or torch.distributed.run): every process draws the same batch
from the same sampler and computes its share; gradients are averaged, so K processes reach the
one-process weights (tests/test_generator_pipeline.py). Only the main process evaluates and writes.

Directory (`out`): config.json (`record.GeneratorRecord`), decoder.safetensors, state.pt (optimizer, scheduler,
RNG, step), log.jsonl.
Weights and state are written atomically at every checkpoint interval; a rerun resumes exactly.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..choice import ChoiceExample, choice_batch, choice_example
from ..lora_tokens import TokenLayout, detokenize, tokenize
from ..models import LoadedModel, LoraState, process_state, read_lora_state
from ..models.lora import ADAPTER_WEIGHTS
from ..sft import Example, sample_batch
from .dataset import TaskTrajectory, average_states, weighted_masked_mse
from .decoder import HyperConvDecoder
from .diagnostics import task_dependence
from .encoder import PromptEncoder
from .function_space import AdapterLoss
from .objectives import OBJECTIVES
from .record import GeneratorRecord, GeneratorTrainConfig, TrainingProgress, decoder_config


@dataclass
class Conditioned:
    """A task's trajectory with its prompts already encoded: (P, L, D), and its labelled train examples
    (for the task loss: answer examples, or every option of each item for the choice loss)."""

    trajectory: TaskTrajectory
    prompt_states: torch.Tensor
    examples: list[Example] | list[ChoiceExample] = field(default_factory=list)


def encode_tasks(trajectories: list[TaskTrajectory], encoder: PromptEncoder,
                 examples: dict[str, list[Example] | list[ChoiceExample]] | None = None) -> list[Conditioned]:
    return [Conditioned(t, encoder.encode(t.prompts), (examples or {}).get(t.task, [])) for t in trajectories]


def sample_prompts(count: int, n: int, rng: torch.Generator) -> torch.Tensor:
    """N distinct prompt indices, or with replacement when the task has fewer than N prompts."""
    if count >= n:
        return torch.randperm(count, generator=rng)[:n]
    return torch.randint(count, (n,), generator=rng)


def _distances(decoder: HyperConvDecoder, task: Conditioned, mask: torch.Tensor, train_mean: torch.Tensor,
               n: int, rng: torch.Generator) -> dict[str, float]:
    condition = task.prompt_states[sample_prompts(len(task.prompt_states), n, rng)][None]
    with torch.no_grad():
        generated = decoder(condition.to(_device(decoder)))[0].float().cpu()
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


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _diagnostics(decoder: HyperConvDecoder, train: list[Conditioned], heldout: list[Conditioned],
                 layout: TokenLayout, mask: torch.Tensor, mean_state: LoraState, config: GeneratorTrainConfig
                 ) -> dict[str, float]:
    record: dict[str, float] = {}
    probe = torch.Generator().manual_seed(config.seed + 2)  # the same prompt draws at every evaluation
    if len(train) > config.diagnostic_tasks:  # the same seeded sample at every evaluation
        picks = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed + 3))
        train = [train[i] for i in sorted(picks[:config.diagnostic_tasks].tolist())]
    for group, tasks in (("train", train), ("heldout", heldout)):
        if not tasks:
            continue
        with torch.no_grad():
            samples = torch.stack([
                decoder(torch.stack([t.prompt_states[sample_prompts(len(t.prompt_states), config.num_prompts, probe)]
                                     for _ in range(config.diagnostic_draws)]).to(_device(decoder))).float().cpu()
                for t in tasks])
        record.update(task_dependence(samples, [t.trajectory.task for t in tasks], layout, mask,
                                      [t.trajectory.adapter or None for t in tasks], mean_state, group))
    return record


def _check_training(train: list[Conditioned], config: GeneratorTrainConfig, adapter_loss: AdapterLoss | None,
                    uses_task_loss: bool) -> None:
    """Refuse, before any work, a training set or settings the objective cannot train on."""
    if not train:
        raise ValueError("no training tasks: the generator needs at least one task's trajectory")
    if uses_task_loss and adapter_loss is None:
        raise ValueError(f"objective {config.objective!r} needs the base model (adapter_loss)")
    if uses_task_loss and adapter_loss.anchor != config.anchor:
        raise ValueError(f"adapter_loss anchors with weight {adapter_loss.anchor}, the config with {config.anchor}")
    if config.contrast > 0 and len(train) < 2:
        raise ValueError("generator.contrast compares prompts of two training tasks: it needs at least two")
    if uses_task_loss and not all(t.examples for t in train):
        raise ValueError(f"objective {config.objective!r} needs labelled examples of every training task; none for "
                         f"{[t.trajectory.task for t in train if not t.examples]}")


def _initial_decoder(config: GeneratorTrainConfig, condition_shape: tuple, token_shape: tuple, layout: TokenLayout,
                     mean_state: LoraState) -> HyperConvDecoder:
    """The decoder at step 0: seeded init, its residual base (the given adapter, else the training mean) as
    parameter tokens, or another generator's weights (`init_from`)."""
    torch.manual_seed(config.seed)
    decoder = HyperConvDecoder(decoder_config(config.decoder), condition_shape, token_shape, config.residual)
    if decoder.base is not None:
        base_state = _base_adapter(Path(config.residual_base), mean_state) if config.residual_base else mean_state
        decoder.base.data.copy_(tokenize(base_state, layout))
    if config.init_from:
        _start_from(decoder, Path(config.init_from))
    return decoder


def _optimizer(decoder: HyperConvDecoder, config: GeneratorTrainConfig) -> torch.optim.AdamW:
    # The residual base is a position, not a weight to shrink: no weight decay on it.
    decayed = [p for name, p in decoder.named_parameters() if name != "base"]
    groups = [{"params": decayed}] + ([{"params": [decoder.base], "weight_decay": 0.0}] if decoder.base is not None else [])
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _draw(train: list[Conditioned], config: GeneratorTrainConfig, sampler: torch.Generator,
          averaged_weights: torch.Tensor) -> tuple[list[Conditioned], torch.Tensor, list, list]:
    """One step's batch from `sampler`: the tasks picked, their noised prompt conditions, a checkpoint's tokens
    of each and its token weights. Every process draws the whole batch, so the draws stay in step."""
    picks = [train[int(torch.randint(len(train), (1,), generator=sampler))] for _ in range(config.batch_size)]
    conditions, targets, weights = [], [], []
    for task in picks:
        traj = task.trajectory
        conditions.append(task.prompt_states[sample_prompts(len(task.prompt_states), config.num_prompts, sampler)])
        targets.append(traj.tokens[int(torch.randint(len(traj.tokens), (1,), generator=sampler))])
        weights.append(averaged_weights if config.token_weighting == "averaged" else traj.weights)
    condition = torch.stack(conditions)
    condition = condition + config.condition_noise * torch.randn(condition.shape, generator=sampler)
    return picks, condition, targets, weights


def _evaluation(decoder: HyperConvDecoder, train: list[Conditioned], heldout: list[Conditioned], layout: TokenLayout,
                mask: torch.Tensor, train_mean: torch.Tensor, mean_state: LoraState,
                config: GeneratorTrainConfig) -> dict[str, Any]:
    """The log line's evaluation: each task's distances (the same probe prompts every time) and the
    task-dependence diagnostics."""
    evaluated = copy.deepcopy(decoder).eval()  # on the training device; results come back to the CPU
    probe = torch.Generator().manual_seed(config.seed + 1)
    record: dict[str, Any] = {}
    for group, tasks in (("train", train), ("heldout", heldout)):
        for task in tasks:
            for key, value in _distances(evaluated, task, mask, train_mean, config.num_prompts, probe).items():
                record[f"{group}/{task.trajectory.task}/{key}"] = value
    record.update(_diagnostics(evaluated, train, heldout, layout, mask, mean_state, config))
    return record


def _loss_terms(model, prediction: torch.Tensor, train: list[Conditioned], picks: list[Conditioned], mine: list[int],
                targets: list, weights: list, layout: TokenLayout, mask: torch.Tensor, objective,
                adapter_loss: AdapterLoss | None, config: GeneratorTrainConfig, sampler: torch.Generator,
                device: torch.device, autocast, world: int) -> dict[str, torch.Tensor]:
    """This process's share of each loss term of the step (each scaled by `world`, so that the averaged
    gradient is the whole batch's): reconstruction of a checkpoint's tokens, the generated adapters' task loss
    terms, and the prompt-contrast term."""
    terms: dict[str, torch.Tensor] = {}
    if objective.needs_targets:
        target = torch.stack(targets)
        target = target + config.target_noise * torch.randn(target.shape, generator=sampler)
        weight = torch.stack(weights)
        terms["reconstruction"] = weighted_masked_mse(prediction, target[mine].to(device), mask,
                                                      weight[mine].to(device), weight.sum()) * world
    if objective.needs_model:
        draw = choice_batch if config.task_loss_kind == "choice" else sample_batch
        batches = [draw(adapter_loss.lm, task.examples, config.task_examples, sampler) for task in picks]
        shares = [adapter_loss.terms(detokenize(generated, layout), batches[i]) for generated, i in zip(prediction, mine)]
        terms.update({name: sum(s[name] for s in shares) / len(picks) * world for name in shares[0]})
        if config.contrast > 0:
            terms["contrast"] = _contrast(model, train, picks, mine, shares, batches, layout, adapter_loss, config,
                                          sampler, device, autocast) * world
    return terms


def train_generator(train: list[Conditioned], heldout: list[Conditioned], layout: TokenLayout,
                    config: GeneratorTrainConfig, out: Path, meta: dict[str, Any], progress: bool = True,
                    adapter_loss: AdapterLoss | None = None) -> HyperConvDecoder:
    """Train a decoder on `train` (logging `heldout` too); `adapter_loss` is required by the task_loss and
    hybrid objectives. Resumes from `out`."""
    objective = OBJECTIVES[config.objective]
    uses_task_loss = objective.needs_model
    _check_training(train, config, adapter_loss, uses_task_loss)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # one process unless `accelerate launch`
    rank, world = accelerator.process_index, accelerator.num_processes
    if world > config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} is smaller than the {world} processes: each process "
                         "needs at least one sample per step")
    device = accelerator.device
    condition_shape = (config.num_prompts, config.prompt_tokens, train[0].prompt_states.shape[-1])
    token_shape = (layout.num_tokens, *layout.token_shape)
    mean_state = average_states([t.trajectory.adapter for t in train])
    decoder = _initial_decoder(config, condition_shape, token_shape, layout, mean_state).to(device)
    if accelerator.is_main_process:
        GeneratorRecord(
            train=config, decoder_shapes=[tuple(s) for s in decoder.shapes], kernel_size=decoder.config.kernel_size,
            head_rank=decoder.config.head_rank, parameters=sum(p.numel() for p in decoder.parameters()),
            train_tasks=[t.trajectory.task for t in train], heldout_tasks=[t.trajectory.task for t in heldout],
            prompts_with_replacement=[t.trajectory.task for t in train if len(t.prompt_states) < config.num_prompts],
            **meta).save(out)
    optimizer = _optimizer(decoder, config)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    sampler = torch.Generator().manual_seed(config.seed)
    start = _resume(decoder, optimizer, scheduler, sampler, out, truncate_log=accelerator.is_main_process)
    model = accelerator.prepare_model(decoder)  # data parallel (gradients averaged) under several processes

    mask = layout.padding_mask().float().to(device)
    train_mean = torch.stack([t.trajectory.mean_tokens for t in train]).mean(0)
    averaged_weights = torch.stack([t.trajectory.weights for t in train]).mean(0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    bar = tqdm(range(start, config.steps), desc=f"train generator ({config.objective})", initial=start,
               total=config.steps, disable=not (progress and accelerator.is_main_process))
    for step in bar:
        t0 = time.perf_counter()
        # Every process draws the whole batch from the same sampler (so the draws stay in step) and computes
        # its share: samples rank, rank + world, ... Each share's sum is divided by the whole batch's
        # normalizer and scaled by `world`, so the averaged gradient is the whole batch's, exactly.
        picks, condition, targets, weights = _draw(train, config, sampler, averaged_weights)
        mine = list(range(rank, config.batch_size, world))
        model.train()
        with autocast:
            prediction = model(condition[mine].to(device)).float()
        terms = _loss_terms(model, prediction, train, picks, mine, targets, weights, layout, mask, objective,
                            adapter_loss, config, sampler, device, autocast, world)
        loss = objective.loss(terms, config.task_loss_weight, adapter_loss)
        if config.contrast > 0:
            loss = loss + config.contrast * terms["contrast"]
        reported = {k: accelerator.reduce(v.detach(), "mean") for k, v in {"loss": loss, **terms}.items()}
        if not torch.isfinite(reported["loss"]):
            raise FloatingPointError(f"non-finite generator loss at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        done = step + 1
        record = {"step": done, "train_loss": reported["loss"].item(),
                  **{f"train_{k}": v.item() for k, v in reported.items() if k != "loss"},
                  "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        if not accelerator.is_main_process:
            if done % config.eval_every == 0 or done == config.steps:
                accelerator.wait_for_everyone()  # the main process evaluates and saves
            continue
        if done % config.eval_every == 0 or done == config.steps:
            record.update(_evaluation(decoder, train, heldout, layout, mask.cpu(), train_mean, mean_state, config))
            record["processes"] = world
            _save(decoder, optimizer, scheduler, sampler, done, out)  # with its log line: one consistent state
            TrainingProgress(done, config.steps).save(out)
            bar.write(_summary(record))
            accelerator.wait_for_everyone()
        with (out / "log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{record['train_loss']:.4f}")
    return decoder


def _contrast(model, train: list[Conditioned], picks: list[Conditioned], mine: list[int], shares: list[dict],
              batches: list[dict], layout: TokenLayout, adapter_loss: AdapterLoss, config: GeneratorTrainConfig,
              sampler: torch.Generator, device: torch.device, autocast) -> torch.Tensor:
    """The prompt-contrast term (`GeneratorTrainConfig.contrast`), summed over this process's samples and divided
    by the batch size: each sample's examples scored under an adapter generated from another training task's
    prompts, hinged on its gap to the own adapter's loss. Every process draws every sample's other task."""
    others = []
    for task in picks:
        other = train[int(torch.randint(len(train) - 1, (1,), generator=sampler))]
        other = train[-1] if other is task else other  # a uniform draw among the other tasks
        others.append(other.prompt_states[sample_prompts(len(other.prompt_states), config.num_prompts, sampler)])
    condition = torch.stack(others)
    condition = condition + config.condition_noise * torch.randn(condition.shape, generator=sampler)
    with autocast:
        foreign = model(condition[mine].to(device)).float()
    total = foreign.new_zeros(())
    for generated, i, own in zip(foreign, mine, shares):
        gap = adapter_loss.terms(detokenize(generated, layout), batches[i])["task_loss"] - own["task_loss"]
        total = total + torch.relu(config.contrast_margin - gap)
    return total / len(picks)


def _base_adapter(adapter_dir: Path, like: LoraState) -> LoraState:
    """The residual base's adapter, refused unless it has exactly the training adapters' tensors and shapes."""
    path = adapter_dir / ADAPTER_WEIGHTS
    if not path.is_file():
        hint = " (`union` names union LoRA only in a `degaml run` config)" if str(adapter_dir) == "union" else ""
        raise FileNotFoundError(f"residual_base {adapter_dir}: no {ADAPTER_WEIGHTS} there (not a PEFT adapter){hint}")
    state = read_lora_state(adapter_dir)
    for name in sorted(state.keys() | like.keys()):
        theirs = tuple(state[name].shape) if name in state else None
        if theirs != (tuple(like[name].shape) if name in like else None):
            raise ValueError(f"residual_base {path}: tensor {name!r} has shape {theirs}, the trajectories' adapters "
                             f"have {tuple(like[name].shape) if name in like else None} (same model and LoRA needed)")
        if not torch.isfinite(state[name]).all():
            raise ValueError(f"residual_base {path}: tensor {name!r} holds NaN or Inf values")
    return state


def _start_from(decoder: HyperConvDecoder, source: Path) -> None:
    """Load another generator's decoder weights; refuse one of other shapes, naming the first mismatch."""
    path = source / "decoder.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"init_from {source}: no decoder.safetensors there (train that generator first)")
    weights, own = load_file(str(path)), decoder.state_dict()
    for name in sorted(own.keys() | weights.keys()):
        theirs = tuple(weights[name].shape) if name in weights else None
        if theirs != tuple(own[name].shape if name in own else ()):
            raise ValueError(f"init_from {path}: tensor {name!r} has shape {theirs}, this generator needs "
                             f"{tuple(own[name].shape) if name in own else None} (same decoder, residual option, "
                             f"model, LoRA and chunk are required)")
    decoder.load_state_dict(weights)


def saved_step(out: Path) -> int:
    """The last step a generator directory has saved (0 when none)."""
    state = Path(out) / "state.pt"
    return int(torch.load(state, weights_only=False)["step"]) if state.is_file() else 0


def _resume(decoder: HyperConvDecoder, optimizer, scheduler, sampler: torch.Generator, out: Path,
            truncate_log: bool = True) -> int:
    """Restore the last saved step (weights, optimizer, scheduler, sampler); drop log lines past it (the
    process that writes the log does)."""
    state_path, weights_path = out / "state.pt", out / "decoder.safetensors"
    if not (state_path.is_file() and weights_path.is_file()):
        if truncate_log:
            (out / "log.jsonl").unlink(missing_ok=True)
        return 0
    state = torch.load(state_path, weights_only=False)
    decoder.load_state_dict(load_file(str(weights_path)))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.set_state(state["sampler"])
    log = out / "log.jsonl"
    if truncate_log and log.is_file():
        kept = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= state["step"]]
        log.write_text("".join(line + "\n" for line in kept))
    return state["step"]


def _summary(record: dict) -> str:
    """One line per evaluation: the losses, each group's task-dependence figures and its mean distance to the
    training mean (per task: log.jsonl)."""
    parts = [f"step {record['step']}", f"train loss {record['train_loss']:.4f}"]
    for key, value in record.items():
        if key.endswith(("_loss", "/variance_ratio", "/centroid_accuracy")) and key.count("/") <= 1 \
                and not math.isnan(value) and key != "train_loss":
            parts.append(f"{key} {value:.4f}")
    for group in ("train", "heldout"):
        distances = [v for k, v in record.items() if k.startswith(f"{group}/") and k.endswith("/mse_to_training_mean")]
        if distances:
            parts.append(f"{group} mean mse_to_training_mean {sum(distances) / len(distances):.4f} "
                         f"({len(distances)} tasks)")
    return " | ".join(parts)


def _save(decoder: HyperConvDecoder, optimizer, scheduler, sampler: torch.Generator, step: int, out: Path) -> None:
    tmp_weights = out / ".decoder.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}, str(tmp_weights))
    tmp_state = out / ".state.pt.tmp"
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "sampler": sampler.get_state(), "step": step}, tmp_state)
    tmp_weights.replace(out / "decoder.safetensors")
    tmp_state.replace(out / "state.pt")


def train_on_trajectories(trajectories: Path, out: Path, holdout: Sequence[str], config: GeneratorTrainConfig,
                          source: str = "offline", progress: bool = True, lm: LoadedModel | None = None) -> Path:
    """Train a generator on every trajectory under `trajectories` except the `holdout` tasks' (those are
    only logged). Trajectories of one task from several collection seeds are pooled. Resumes from `out`, and
    returns at once when `out` is finished (before loading trajectories, prompts or the base model). The task
    losses run `lm` (the trajectories' base model, e.g. a run's, already loaded) or load the trajectories' model in
    `config.model_dtype`."""
    from ..config import ModelConfig
    from ..data.prompts import format_prompt, task_items
    from ..models import LoraGeometry, load_model
    from ..sft import training_example
    from .dataset import load_trajectory
    from .trajectories import TrajectoryManifest

    if saved_step(out) >= config.steps:
        return Path(out)
    task_dirs = sorted(p for p in Path(trajectories).iterdir() if p.is_dir()) if Path(trajectories).is_dir() else []
    if not task_dirs:
        raise FileNotFoundError(f"{trajectories} holds no task trajectories (run `degaml collect` first)")
    manifests = {d: TrajectoryManifest.load(d) for d in task_dirs}
    by_geometry: dict[str, list[str]] = {}
    for task_dir, manifest in manifests.items():
        by_geometry.setdefault(json.dumps(manifest.geometry, sort_keys=True), []).append(task_dir.name)
    if len(by_geometry) != 1:
        groups = sorted(by_geometry.values(), key=len, reverse=True)
        raise ValueError(f"trajectories in {trajectories} come from models or LoRA settings of different geometry: "
                         f"{', '.join(groups[1][:3])} differ from {', '.join(groups[0][:3])}"
                         + (" and others" if len(groups[0]) > 3 else ""))
    first = next(iter(manifests.values()))
    layout = TokenLayout.from_geometry(LoraGeometry.from_dict(first.geometry), config.chunk,
                                       config.stat_code)
    by_task: dict[str, list[Path]] = {}
    for task_dir, manifest in manifests.items():
        by_task.setdefault(manifest.task, []).append(task_dir)
    held = set(holdout)
    unknown = held - by_task.keys()
    if unknown:
        print(f"note: held-out task(s) {sorted(unknown)} have no trajectory; they are simply not trained on")
    process = process_state()  # under `accelerate launch`, each process loads the model on its own device
    device = str(process.device) if process.num_processes > 1 else "auto"
    if not OBJECTIVES[config.objective].needs_model:
        lm = None
    elif lm is None:
        lm = load_model(ModelConfig(name=first.model, dtype=config.model_dtype, device=device))
    prompt_encoder = PromptEncoder.with_default_cache(config.encoder, config.prompt_tokens)
    train, heldout, examples = [], [], {}
    for task, dirs in by_task.items():
        items = task_items(manifests[dirs[0]].task_source, "train", manifests[dirs[0]].partition_config(source)
                           )[:config.max_prompts]
        trajectory = load_trajectory(dirs, layout, [format_prompt(it, config.prompt_format) for it in items])
        (heldout if task in held else train).append(trajectory)
        if lm is not None and task not in held:
            examples[task] = [
                choice_example(lm, it, config.max_tokens, config.choice_options, config.seed, config.answer_format)
                if config.task_loss_kind == "choice" else
                training_example(lm, it, config.max_tokens, answer_format=config.answer_format) for it in items]
    meta = {"model": first.model, "lora": first.lora, "geometry": first.geometry,
            "trajectories": str(Path(trajectories).resolve())} | ({"compute": lm.compute()} if lm is not None else {})
    adapter_loss = AdapterLoss(lm, first.lora, config.anchor) if lm is not None else None
    try:
        train_generator(encode_tasks(train, prompt_encoder, examples), encode_tasks(heldout, prompt_encoder), layout,
                        config, Path(out), meta, progress, adapter_loss)
    finally:
        if adapter_loss is not None:
            adapter_loss.close()
    return Path(out)
