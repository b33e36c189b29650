"""The `degaml collect`, `train-generator` and `generate` commands (typed functions; `degaml/cli.py` is
the command table)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

from ..config import DataConfig, LoraSettings, ModelConfig, PartitionConfig, task_names
from ..data.files import read_prompt_lines
from ..data.prompts import task_prompts
from ..data.tasks import check_task_names, task_label
from ..io import check_output_path, check_replaceable, claim_directory
from .record import GeneratorTrainConfig
from .settings import CollectConfig


def shard(tasks: list[str], index: int, count: int) -> list[str]:
    """The tasks process `index` of `count` collects: every count-th, so the shards are disjoint and complete."""
    return tasks[index::count]


def collect(
    tasks: list[str] | str,
    out: Path,
    model: ModelConfig | None = None,
    lora: LoraSettings | None = None,
    collect: CollectConfig | None = None,
    seeds: list[int] | None = None,
    partition: PartitionConfig | None = None,
    progress: bool = True,
) -> None:
    """Fine-tune a LoRA per task on its train partition and save the LoRA after every trajectory step.

    A task whose folder has a manifest is skipped; a half-finished one resumes from its last step.
    Under `accelerate launch --num_processes K -m degaml.cli collect ...` each process (and its GPU)
    takes every K-th task.

    Args:
        tasks: Task names or .json/.jsonl files (`--tasks a,b`).
        out: Trajectories directory (one sub-folder per task).
        model: Base model (a short name of `degaml list-models`, a hub id or a local directory), dtype, device.
        lora: LoRA rank, alpha and target modules.
        collect: Steps, batch and learning rate of each trajectory (its seed is replaced by `seeds`).
        seeds: Seeds of the LoRA init and batch order (default [0]): one trajectory per task and seed (the first
            in `<out>/<task>`, the others in `<out>/<task>-seed<k>`).
        partition: Where tasks are read from and their train/validation/test partition.
        progress: Show progress bars.
    """
    from ..models import load_model, process_state
    from .trajectories import collect_tasks

    model, lora, config = model or ModelConfig(), lora or LoraSettings(), collect or CollectConfig()
    seed_list = list(seeds) if seeds is not None else [config.seed]
    if not seed_list:
        raise ValueError("--seeds must name at least one seed")
    process = process_state()  # a single process unless started by `accelerate launch`
    mine = shard(task_names(tasks), process.process_index, process.num_processes)
    if not mine:
        return
    data = DataConfig(tasks=mine, split="train", limit=None, partition=partition or PartitionConfig())
    if model.device == "auto" and process.num_processes > 1:
        model = replace(model, device=str(process.device))
    check_task_names(mine, "--tasks")  # before the model loads
    claim_directory(out, ("*/manifest.json", "*/checkpoints"))
    lm = load_model(model)
    # Trajectories resume per task (each process collects its own), so the directory is shared, not locked.
    for task_dir in collect_tasks(lm, model.name, data, Path(out), lora, replace(config, seed=seed_list[0]), progress,
                                  seed_list):
        print(f"{task_dir.name}: {task_dir}")


def train_generator(
    trajectories: Path,
    out: Path,
    holdout: list[str] | str | None = None,
    generator: GeneratorTrainConfig | None = None,
    source: Literal["offline", "hub"] = "offline",
    progress: bool = True,
) -> None:
    """Train the prompt-to-LoRA generator on collected trajectories, leaving the `holdout` tasks out.

    Held-out tasks that have trajectories are used only to log held-out loss and distances. Resumes from
    `out` if a run was interrupted. Named recipes (`--generator.recipe NAME`) are the files of
    `configs/generator/` (recon-paper, recon, task-loss, hybrid, task-loss-on-union, ...); a recipe whose
    residual base is `union` needs `--generator.residual_base <union LoRA directory>` outside `degaml run`.

    Args:
        trajectories: Directory written by `degaml collect`.
        out: Generator directory.
        holdout: Tasks never trained on (`--holdout a,b`).
        generator: Decoder shapes, prompt encoding, the training recipe (`--generator.recipe` or its fields) and
            budget; `--generator.help GeneratorTrainConfig` lists every field.
        source: Where the trajectories' task prompts are read from.
        progress: Show progress bars.
    """
    from contextlib import nullcontext

    from ..io import exclusive_output
    from ..models import process_state
    from .training import train_on_trajectories

    # Under `accelerate launch` every process trains; only the main one writes, so only it holds the lock.
    if process_state().is_main_process:
        claim_directory(out, ("config.json", "decoder.safetensors"))
    with exclusive_output(out, replaced=False) if process_state().is_main_process else nullcontext():
        train_on_trajectories(Path(trajectories), Path(out), task_names(holdout or []),
                              generator or GeneratorTrainConfig(), source, progress)
    print(f"generator: {out}")


def generate(
    generator: Path,
    prompts: str,
    out: Path,
    split: Literal["train", "validation", "test"] = "train",
    partition: PartitionConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> None:
    """Generate a PEFT LoRA adapter for a task from its unlabelled prompts, in one forward pass.

    Args:
        generator: Directory written by `degaml train-generator`.
        prompts: A task name, a .json/.jsonl task file (only prompts are read), or a .txt file (one prompt per line).
        out: Adapter directory to write (adapter_config.json + adapter_model.safetensors).
        split: Partition whose prompts are used (answers are never read).
        partition: Where the task is read from and its train/validation/test partition.
        seed: Seed of the prompt sample.
        device: Device of the generator.
    """
    from ..io import exclusive_output
    from .generation import Generator

    check_replaceable(check_output_path(out))
    texts = read_prompt_lines(prompts) if prompts.endswith(".txt") else None  # read before the generator loads
    gen = Generator(generator, device)
    if texts is None:
        texts = task_prompts(prompts, split, partition or PartitionConfig(), gen.prompt_format)
    with exclusive_output(out):
        task = Path(prompts).name if prompts.endswith(".txt") else task_label(prompts)  # never a local path
        record = gen.generate_checked(texts, Path(out), seed, task=task)
    print(f"adapter: {out}\ngenerated in {record.generation_seconds:.3f} s (prompt encoding "
          f"{record.encode_seconds:.3f} s, decoder {record.decode_seconds:.3f} s) from {record.conditioning}")


def push(generator: Path, repo: str, private: bool = False, token: str | None = None) -> None:
    """Upload a trained generator to the Hugging Face Hub, creating the repository if needed.

    It uploads the config, decoder weights, model card and training log, never the optimizer state. Load it
    back with `degaml generate --generator <repo>` or `Generator("<repo>")`.

    Args:
        generator: A trained generator directory (`degaml train-generator` or a run's `folds/<fold>/generator`).
        repo: The Hub repository id, `<user or organization>/<name>`.
        private: Create the repository as private.
        token: A Hub token (default: the one `huggingface-cli login` stored, or `HF_TOKEN`).
    """
    from huggingface_hub import HfApi

    from .generation import Generator
    from .hub import SHARED_FILES
    from .record import write_readme

    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise ValueError(f"--repo {repo!r} is not a Hub repository id of the form <user or organization>/<name>")
    loaded = Generator(Path(generator))  # refuses anything that is not a complete, loadable generator
    write_readme(loaded.directory, loaded.record)
    api = HfApi(token=token)
    api.create_repo(repo_id=repo, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(loaded.directory), repo_id=repo, repo_type="model",
                             allow_patterns=SHARED_FILES, commit_message="Upload a degaml generator")
    print(f"pushed {loaded.directory} to {getattr(info, 'commit_url', repo)}")
