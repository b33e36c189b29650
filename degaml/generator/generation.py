"""Generation (docs/design.md): prompts of a new task -> a PEFT adapter directory, in one forward pass."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import LoraSettings
from ..io import atomic_directory, atomic_write_json
from ..lora_tokens import TokenLayout, detokenize
from ..models.lora import ADAPTER_WEIGHTS, AdapterMismatchError, LoraGeometry, peft_config
from .decoder import DecoderConfig, HyperConvDecoder
from .encoder import PromptEncoder
from .trajectories import load_checkpoint, read_manifest


def check_same_geometry(expected: LoraGeometry, actual: LoraGeometry, what: str) -> None:
    """Refuse a generator for a model of other geometry, naming the first module that differs."""
    theirs = actual.by_path()
    for module in expected.modules:
        other = theirs.get(module.path)
        if other is None:
            raise AdapterMismatchError(f"{what}: the target model has no module {module.path!r}")
        if (other.a_shape, other.b_shape) != (module.a_shape, module.b_shape):
            raise AdapterMismatchError(
                f"{what}: module {module.path!r} is {module.in_features}->{module.out_features} at rank "
                f"{module.rank} in the generator but {other.in_features}->{other.out_features} at rank "
                f"{other.rank} in the target model")
    if len(theirs) != len(expected.modules):
        raise AdapterMismatchError(f"{what}: {len(expected.modules)} LoRA modules in the generator, "
                                   f"{len(theirs)} in the target model")


def write_adapter(state_dict: dict[str, torch.Tensor], lora: LoraSettings, base_model: str, out: Path,
                  extra: dict | None = None, tensors: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """A PEFT adapter directory from a LoRA state dict (PEFT keys), written atomically; `extra` goes to
    degaml.json and `tensors` ({file name: tensors}) to further safetensors files beside the adapter."""
    with atomic_directory(out) as tmp:
        config = peft_config(lora)
        config.base_model_name_or_path = base_model
        config.save_pretrained(str(tmp))
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp / ADAPTER_WEIGHTS))
        if extra is not None:
            atomic_write_json(tmp / "degaml.json", extra)
        for name, group in (tensors or {}).items():
            save_file({k: v.contiguous() for k, v in group.items()}, str(tmp / name))
    return out


def mean_adapter(task_dirs: Sequence[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of every checkpoint of the given trajectories (A and B averaged separately):
    the adapter a collapsed generator would produce."""
    total: dict[str, torch.Tensor] = {}
    count = 0
    for task_dir in task_dirs:
        for name in read_manifest(task_dir)["checkpoints"]:
            for key, value in load_checkpoint(task_dir / "checkpoints" / name).items():
                total[key] = total.get(key, 0) + value.float()
            count += 1
    if count == 0:
        raise ValueError("no checkpoints to average")
    return {k: v / count for k, v in total.items()}


class Generator:
    """A trained generator directory, loaded for inference."""

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        self.directory = Path(directory)
        config_path = self.directory / "config.json"
        if not config_path.is_file() or not (self.directory / "decoder.safetensors").is_file():
            raise FileNotFoundError(f"{self.directory} is not a trained generator (config.json and decoder.safetensors needed)")
        self.config = json.loads(config_path.read_text())
        self.geometry = LoraGeometry.from_dict(self.config["geometry"])
        self.lora = LoraSettings(**self.config["lora"])
        train = self.config["train"]
        # Generators trained before these options existed used the paper's code, no residual, bare questions.
        self.layout = TokenLayout.from_geometry(self.geometry, train["chunk"], train.get("stat_code", "paper"))
        self.prompt_format = train.get("prompt_format", "question")
        shapes = [tuple(s) for s in self.config["decoder_shapes"]]
        decoder_config = DecoderConfig(hidden_shapes=shapes[1:-1], kernel_size=self.config["kernel_size"])
        self.decoder = HyperConvDecoder(decoder_config, shapes[0], shapes[-1],
                                        train.get("residual", False)).to(device).eval()
        self.decoder.load_state_dict(load_file(str(self.directory / "decoder.safetensors")))
        self.encoder = PromptEncoder.with_default_cache(self.config["train"]["encoder"],
                                                        self.config["train"]["prompt_tokens"], device)
        self.num_prompts = self.config["train"]["num_prompts"]

    def select_prompts(self, prompts: Sequence[str], seed: int = 0) -> tuple[list[str], bool]:
        """N prompts in a seeded order; with replacement (and said so) when fewer than N are given."""
        if not prompts:
            raise ValueError("no prompts: the generator needs the new task's unlabelled prompts")
        g = torch.Generator().manual_seed(seed)
        if len(prompts) >= self.num_prompts:
            return [prompts[i] for i in torch.randperm(len(prompts), generator=g)[:self.num_prompts]], False
        return [prompts[i] for i in torch.randint(len(prompts), (self.num_prompts,), generator=g)], True

    @torch.no_grad()
    def generate_state(self, prompts: Sequence[str], seed: int = 0,
                       target_geometry: LoraGeometry | None = None) -> tuple[dict[str, torch.Tensor], dict]:
        """(LoRA state dict, info) for a task's prompts, in memory."""
        if target_geometry is not None:
            check_same_geometry(self.geometry, target_geometry, f"generator {self.directory}")
        selected, with_replacement = self.select_prompts(prompts, seed)
        t0 = time.perf_counter()
        condition = self.encoder.encode(selected)[None].to(next(self.decoder.parameters()).device)
        t1 = time.perf_counter()
        tokens = self.decoder(condition)[0].float().cpu()
        state = detokenize(tokens, self.layout)
        t2 = time.perf_counter()
        info = {"generator": str(self.directory), "prompts_given": len(prompts), "prompts_used": len(selected),
                "sampled_with_replacement": with_replacement, "seed": seed,
                "encode_seconds": t1 - t0, "decode_seconds": t2 - t1, "generation_seconds": t2 - t0}
        return state, info

    def generate(self, prompts: Sequence[str], out: Path, base_model: str, seed: int = 0,
                 target_geometry: LoraGeometry | None = None) -> dict:
        state, info = self.generate_state(prompts, seed, target_geometry)
        write_adapter(state, self.lora, base_model, out, extra=info)
        return info
