"""Generation (docs/design.md): prompts of a new task -> a PEFT adapter directory, in one forward pass."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..data.files import check_prompts
from ..lora_tokens import TokenLayout, detokenize
from ..models import write_adapter
from ..models.generation_record import GenerationRecord
from ..models.lora import AdapterMismatchError, LoraGeometry
from .decoder import HyperConvDecoder
from .encoder import PromptEncoder
from .hub import resolve_generator
from .record import GeneratorRecord, TrainingProgress
from .settings import DecoderConfig


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


def read_decoder_weights(directory: Path, decoder: HyperConvDecoder) -> dict[str, torch.Tensor]:
    """decoder.safetensors, refused with the file and the tensor at fault when it is unreadable, lacks a tensor,
    holds one of another shape than its record's decoder, or holds NaN or Inf."""
    from safetensors import SafetensorError

    path = Path(directory) / "decoder.safetensors"
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not readable safetensors ({e}); the file is truncated or corrupt") from None
    expected = decoder.state_dict()
    for name, tensor in expected.items():
        if name not in weights:
            raise ValueError(f"{path}: tensor {name!r} is missing")
        if weights[name].shape != tensor.shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(weights[name].shape)}, the decoder in "
                             f"{Path(directory) / 'config.json'} needs {tuple(tensor.shape)} (weights of another "
                             "generator?)")
        if not torch.isfinite(weights[name]).all():
            raise ValueError(f"{path}: tensor {name!r} holds NaN or Inf values")
    unknown = sorted(weights.keys() - expected.keys())
    if unknown:
        raise ValueError(f"{path}: unexpected tensor(s) {unknown[:3]} for the decoder of its config.json")
    return weights


def refuse_unfinished(directory: Path) -> None:
    """Refuse a generator whose training stopped before its last step (its `TrainingProgress` says how far it
    went; a generator without one, from before it existed or from the Hub, is taken as finished)."""
    progress = TrainingProgress.load(directory)
    if progress is not None and not progress.finished:
        raise ValueError(f"{directory} holds a generator trained for {progress.step} of its {progress.steps} steps "
                         "(its training was interrupted); finish it by running the same `degaml train-generator` "
                         "command again")


class Generator:
    """A trained generator directory, loaded for inference."""

    def __init__(self, directory: Path | str, device: str = "cpu") -> None:
        """`directory`: a trained generator directory, or a Hub repository id holding one (`degaml push`)."""
        self.directory = resolve_generator(directory)
        if not (self.directory / "decoder.safetensors").is_file():
            raise FileNotFoundError(f"{self.directory} is not a trained generator (decoder.safetensors is missing)")
        refuse_unfinished(self.directory)
        self.record = GeneratorRecord.load(self.directory)
        train = self.record.train
        self.geometry = LoraGeometry.from_dict(self.record.geometry)
        self.lora = self.record.lora
        self.layout = TokenLayout.from_geometry(self.geometry, train.chunk, train.stat_code)
        self.prompt_format = train.prompt_format
        shapes = self.record.decoder_shapes
        decoder_config = DecoderConfig(hidden_shapes=shapes[1:-1], kernel_size=self.record.kernel_size,
                                       head_rank=self.record.head_rank)
        self.decoder = HyperConvDecoder(decoder_config, shapes[0], shapes[-1], train.residual).to(device).eval()
        self.decoder.load_state_dict(read_decoder_weights(self.directory, self.decoder))
        self.encoder = PromptEncoder.with_default_cache(train.encoder, train.prompt_tokens, device)
        self.num_prompts = train.num_prompts

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
                       target_geometry: LoraGeometry | None = None, task: str = ""
                       ) -> tuple[dict[str, torch.Tensor], GenerationRecord]:
        """(LoRA state dict, what was generated from what) for a task's prompts, in memory."""
        if target_geometry is not None:
            check_same_geometry(self.geometry, target_geometry, f"generator {self.directory}")
        selected, with_replacement = self.select_prompts(prompts, seed)
        t0 = time.perf_counter()
        condition = self.encoder.encode(selected)[None].to(next(self.decoder.parameters()).device)
        t1 = time.perf_counter()
        tokens = self.decoder(condition)[0].float().cpu()
        state = detokenize(tokens, self.layout)
        broken = [k for k, v in state.items() if not torch.isfinite(v).all()]
        if broken:  # e.g. prompt encodings that overflow the decoder: never write such an adapter
            raise ValueError(f"generator {self.directory}: the generated adapter has non-finite values in "
                             f"{len(broken)} of {len(state)} tensors (first {broken[0]}); nothing was written")
        t2 = time.perf_counter()
        record = GenerationRecord(
            generator=str(self.directory), prompts_given=len(prompts), prompts_used=len(selected),
            prompts_sha256=hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
            sampled_with_replacement=with_replacement, seed=seed, encode_seconds=t1 - t0, decode_seconds=t2 - t1,
            generation_seconds=t2 - t0, task=task or "")
        return state, record

    def generate(self, prompts: Sequence[str], out: Path, base_model: str, seed: int = 0,
                 target_geometry: LoraGeometry | None = None, task: str | None = None) -> GenerationRecord:
        state, record = self.generate_state(prompts, seed, target_geometry, task or "")
        write_adapter(state, self.lora, base_model, out, record.to_info())
        return record

    def generate_checked(self, prompts: Sequence[str], out: Path, seed: int = 0, task: str | None = None
                         ) -> GenerationRecord:
        """`generate` for the base model the generator was trained on, first checking (from that model's
        config alone, no weights) that it has the generator's LoRA geometry. `task`: the task's name, recorded
        in the adapter's degaml.json and model card."""
        from transformers import AutoConfig

        from ..models import resolve_model

        check_prompts(prompts)
        base = self.record.model
        target = LoraGeometry.from_config(AutoConfig.from_pretrained(resolve_model(base)), self.lora)
        return self.generate(prompts, Path(out), base, seed, target, task)
