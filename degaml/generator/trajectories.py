"""Trajectory collection (docs/design.md, trajectories): fine-tune a LoRA on a task's train partition and keep the
LoRA state after every optimizer step of the trajectory phase.

One task = one folder:

    <out>/<task>/checkpoints/step_00031.safetensors ...   LoRA state (PEFT keys, float32) after that step
    <out>/<task>/resume.pt                                 optimizer, scheduler, RNG, step (latest)
    <out>/<task>/manifest.json                             config, partition, checkpoints, timing; written last

A second trajectory seed of the same task goes to `<out>/<task>-seed<k>/` (its manifest names the task,
and the generator pools every trajectory of a task). With a `cache` folder (`degaml run` passes
`<cache_root>/trajectories`), a task trains once into `<cache>/<task>-<key>/`, the key a hash of everything that
determines the trajectory (task, partition, model, geometry, LoRA, collect settings and seed, dtype), and every
output that asks for it gets a hard-linked copy: runs that share a task pool share its collection. The learning rate is constant: the saved steps are a
steady walk of the optimizer, not the tail of a decaying schedule (where consecutive checkpoints would be
near-duplicates).

Batches are drawn from a generator seeded by (seed, step), so a resumed run sees exactly the batches
an uninterrupted one would. The loss is the causal-LM loss on the answer tokens only (the context is
masked), i.e. supervised fine-tuning on "context + answer".
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_constant_schedule

from ..config import DataConfig, LoraSettings, PartitionConfig
from ..data import MultipleChoiceItem
from ..io import atomic_write_json, exclusive_directory, key_fields, link_copy, run_metadata
from ..models import LoadedModel, attach_lora, check_adapter_fits, read_lora_state
from ..models.lora import ADAPTER_WEIGHTS
from ..sft import collate, training_example
from .settings import CollectConfig

MANIFEST = "manifest.json"


def trajectory_dir_name(task: str, seed: int, first_seed: int) -> str:
    return task if seed == first_seed else f"{task}-seed{seed}"


def checkpoint_paths(task_dir: Path) -> list[Path]:
    return sorted((task_dir / "checkpoints").glob("step_*.safetensors"))


def is_complete(task_dir: Path) -> bool:
    return (task_dir / MANIFEST).is_file()


MAX_LORA_VALUE = 1e3
"""A LoRA weight beyond this is corruption, not training (trained values are below 1)."""


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, refused (naming the file and tensor) when unreadable, non-finite or absurd."""
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for truncated or corrupt files
        raise ValueError(f"trajectory checkpoint {path} is missing or corrupt ({e})") from None
    for key, value in state.items():
        if not torch.isfinite(value).all():
            raise ValueError(f"trajectory checkpoint {path}: tensor {key} holds NaN or Inf values (corrupt file?)")
        if value.abs().max() > MAX_LORA_VALUE:
            raise ValueError(f"trajectory checkpoint {path}: tensor {key} has a value of "
                             f"{float(value.abs().max()):.3g}, beyond any trained LoRA (corrupt file?)")
    return state


def collect_task(lm: LoadedModel, task: str, train_items: Sequence[MultipleChoiceItem], out: Path,
                 lora: LoraSettings, config: CollectConfig, partition_summary: dict, progress: bool = True,
                 dir_name: str | None = None, cache: Path | None = None) -> Path:
    """Fine-tune one LoRA on `train_items` and save its trajectory under `out/<dir_name or task>`; resume if
    half done. The task's directory is locked while it trains: a second collection of the same task (another
    `degaml collect` on the same output) is refused instead of interleaving its checkpoints. With `cache`, the
    trajectory trains (or resumes) in the cache and `out` gets a hard-linked copy."""
    task_dir = out / (dir_name or task)
    if is_complete(task_dir):
        return task_dir
    if not train_items:
        raise ValueError(f"task {task!r}: the train partition is empty")
    if config.start:
        check_adapter_fits(config.start, lm.model)
    if cache is None:
        with exclusive_directory(task_dir):
            return _train_trajectory(lm, task, train_items, task_dir, lora, config, partition_summary, progress)
    cached = cache / f"{task}-{trajectory_key(task, lora, config, partition_summary, lm)}"
    with exclusive_directory(cached):
        if not is_complete(cached):  # another process may have finished it meanwhile
            _train_trajectory(lm, task, train_items, cached, lora, config, partition_summary, progress)
    with exclusive_directory(task_dir):
        link_copy(cached, task_dir, MANIFEST)
    return task_dir


def trajectory_key(task: str, lora: LoraSettings, config: CollectConfig, partition_summary: dict,
                   lm: LoadedModel) -> str:
    """16 hex digits of a hash of everything that determines a trajectory."""
    collect = key_fields(config)
    if config.start:  # the weights, not where a run keeps them
        collect["start"] = hashlib.sha256((Path(config.start) / ADAPTER_WEIGHTS).read_bytes()).hexdigest()
    record = {"task": task, "lora": asdict(lora), "collect": collect, "partition": partition_summary,
              "dtype": lm.precision.dtype,
              "weights": lm.source}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _train_trajectory(lm: LoadedModel, task: str, train_items: Sequence[MultipleChoiceItem], task_dir: Path,
                      lora: LoraSettings, config: CollectConfig, partition_summary: dict, progress: bool) -> Path:
    (task_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    examples = [training_example(lm, it, config.max_tokens, answer_format=config.answer_format) for it in train_items]

    torch.manual_seed(config.seed)  # the LoRA init
    model = attach_lora(lm.model, lora)
    if config.start:
        set_peft_model_state_dict(model, read_lora_state(config.start))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    scheduler = get_constant_schedule(optimizer)
    start, seconds = 0, 0.0
    resume_path = task_dir / "resume.pt"
    if resume_path.is_file():
        state = torch.load(resume_path, weights_only=False)
        set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, seconds = state["step"], state["seconds"]

    pad = lm.tokenizer.pad_token_id
    losses: list[float] = []
    bar = tqdm(range(start, config.total_steps), desc=f"collect {task}", disable=not progress, initial=start,
               total=config.total_steps)
    for step in bar:
        t0 = time.perf_counter()
        sampler = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(config.gradient_accumulation):
            picks = torch.randint(len(examples), (config.batch_size,), generator=sampler).tolist()
            batch = {k: v.to(lm.device) for k, v in collate([examples[i] for i in picks], pad).items()}
            loss = model(**batch).loss / config.gradient_accumulation
            if not torch.isfinite(loss):
                raise FloatingPointError(f"task {task!r}: non-finite loss at step {step + 1}")
            loss.backward()
            step_loss += loss.item()
        optimizer.step()
        scheduler.step()
        seconds += time.perf_counter() - t0
        losses.append(step_loss)
        bar.set_postfix(loss=f"{step_loss:.3f}")
        done = step + 1
        if done > config.burn_in_steps:
            lora_state = {k: v.detach().float().cpu().contiguous()
                          for k, v in get_peft_model_state_dict(model).items()}
            path = task_dir / "checkpoints" / f"step_{done:05d}.safetensors"
            tmp = path.with_name(f".{path.name}.tmp")
            save_file(lora_state, str(tmp))
            tmp.replace(path)
            tmp_state = resume_path.with_name(".resume.pt.tmp")
            torch.save({"lora": lora_state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "step": done, "seconds": seconds}, tmp_state)
            tmp_state.replace(resume_path)

    checkpoints = checkpoint_paths(task_dir)
    if len(checkpoints) != config.checkpoints:
        raise RuntimeError(f"{task_dir}: expected {config.checkpoints} checkpoints, found {len(checkpoints)}")
    model.unload()  # remove the LoRA layers; the base model is reused for the next task
    lm.model.eval()
    TrajectoryManifest(
        task=task, config=config, lora=lora, partition=partition_summary, train_items=len(train_items),
        checkpoints=[p.name for p in checkpoints], train_seconds=seconds,
        seconds_per_step=seconds / max(config.total_steps, 1), last_losses=losses[-10:],
        meta=run_metadata(config.seed, lm.compute())).save(task_dir)
    resume_path.unlink(missing_ok=True)
    return task_dir


@dataclass
class TrajectoryManifest:
    """A finished trajectory's manifest.json, written last: what was trained, how, and its checkpoints."""

    task: str
    config: CollectConfig
    lora: LoraSettings
    partition: dict
    """The partition summary plus `task_source` (name or file), `model` and `geometry` (LoraGeometry.to_dict())."""
    train_items: int
    checkpoints: list[str]
    """File names under checkpoints/, in step order."""
    train_seconds: float
    seconds_per_step: float
    last_losses: list[float] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.partition["model"]

    @property
    def task_source(self) -> str:
        return self.partition["task_source"]

    @property
    def geometry(self) -> dict:
        return self.partition["geometry"]

    def partition_config(self, source: str = "offline") -> PartitionConfig:
        """The partition the trajectory trained on (its train part), read from `source`."""
        return PartitionConfig(seed=self.partition["seed"], validation_fraction=self.partition["validation_fraction"],
                               test_fraction=self.partition["test_fraction"], source=source)  # type: ignore[arg-type]

    def checkpoint_paths(self, task_dir: Path) -> list[Path]:
        return [Path(task_dir) / "checkpoints" / name for name in self.checkpoints]

    def save(self, task_dir: Path) -> None:
        atomic_write_json(Path(task_dir) / MANIFEST, asdict(self))

    @classmethod
    def load(cls, task_dir: Path) -> TrajectoryManifest:
        """The manifest of a finished trajectory whose checkpoints all exist; any fault names the file."""
        path = Path(task_dir) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{task_dir} has no {MANIFEST}: its trajectory is not complete (run `degaml collect`)")
        try:
            record = json.loads(path.read_text())
            config = record["config"]
            if "warmup_steps" in config:  # the name before burn_in_steps
                config["burn_in_steps"] = config.pop("warmup_steps")
            manifest = cls(**{**record, "config": CollectConfig(**config), "lora": LoraSettings(**record["lora"])})
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a trajectory manifest ({type(e).__name__}: {e})") from None
        for name in manifest.checkpoints:
            if not (Path(task_dir) / "checkpoints" / name).is_file():
                raise FileNotFoundError(f"{task_dir}: checkpoint {name} listed in the manifest is missing")
        return manifest


def collect_tasks(lm: LoadedModel, model_name: str, data: DataConfig, out: Path, lora: LoraSettings,
                  config: CollectConfig, progress: bool = True, seeds: Sequence[int] | None = None,
                  cache: Path | None = None) -> list[Path]:
    """Collect a trajectory for each of `data.tasks` (train partitions) and each of `seeds` (default: the
    config's seed), skipping finished ones (and, with `cache`, ones another output already trained)."""
    from dataclasses import replace

    from ..data.prompts import load_partitioned
    from ..models import LoraGeometry

    geometry = LoraGeometry.from_model(lm.model, lora).to_dict()
    done = []
    for name, (task, (items, part)) in zip(data.tasks, load_partitioned(data).items()):
        summary = {**part.summary(), "task_source": name, "model": model_name, "geometry": geometry}
        for seed in seeds or [config.seed]:
            done.append(collect_task(lm, task, part.select(items, "train"), out, lora, replace(config, seed=seed),
                                     summary, progress, trajectory_dir_name(task, seed, (seeds or [config.seed])[0]),
                                     cache))
    return done
