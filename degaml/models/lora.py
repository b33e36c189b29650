"""LoRA on top of PEFT: attach, describe (geometry), save and load adapter directories.

An adapter directory is exactly what PEFT writes (adapter_config.json + adapter_model.safetensors), so
PEFT, vLLM and lm-evaluation-harness load ours unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import safe_open
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from ..config import LoraSettings
from .loading import LoadedModel

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_LAYER_INDEX = re.compile(r"\.(\d+)\.")
_PEFT_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


LoraState = dict[str, torch.Tensor]
"""A LoRA adapter's weights under PEFT's state-dict keys (`...q_proj.lora_A.weight`)."""


class AdapterMismatchError(ValueError):
    """An adapter does not fit the model it is applied to."""


@dataclass(frozen=True)
class LoraModuleGeometry:
    path: str
    """Module path in the base model, e.g. `model.layers.3.self_attn.q_proj`."""
    layer: int
    kind: str
    """Projection name: q_proj, k_proj, ..."""
    in_features: int
    out_features: int
    rank: int

    @property
    def a_shape(self) -> tuple[int, int]:
        return (self.rank, self.in_features)

    @property
    def b_shape(self) -> tuple[int, int]:
        return (self.out_features, self.rank)


@dataclass(frozen=True)
class LoraGeometry:
    """Every LoRA-wrapped linear layer of a model, in the model's module order."""

    modules: tuple[LoraModuleGeometry, ...]
    rank: int
    alpha: int

    @property
    def num_layers(self) -> int:
        return len({m.layer for m in self.modules})

    @property
    def num_parameters(self) -> int:
        return sum(m.rank * (m.in_features + m.out_features) for m in self.modules)

    def by_path(self) -> dict[str, LoraModuleGeometry]:
        return {m.path: m for m in self.modules}

    @classmethod
    def from_model(cls, model: nn.Module, settings: LoraSettings) -> LoraGeometry:
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        modules = []
        for path, module in base.named_modules():
            kind = path.rsplit(".", 1)[-1]
            if kind not in settings.target_modules:
                continue
            linear = getattr(module, "base_layer", module)  # PEFT wraps the original Linear
            if not isinstance(linear, nn.Linear):
                continue
            match = _LAYER_INDEX.search(path)
            modules.append(
                LoraModuleGeometry(
                    path=path,
                    layer=int(match.group(1)) if match else -1,
                    kind=kind,
                    in_features=linear.in_features,
                    out_features=linear.out_features,
                    rank=settings.r,
                )
            )
        if not modules:
            raise ValueError(f"no linear module named any of {settings.target_modules} in {type(base).__name__}")
        return cls(modules=tuple(modules), rank=settings.r, alpha=settings.alpha)

    def to_dict(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "modules": [asdict(m) for m in self.modules]}

    @classmethod
    def from_dict(cls, data: dict) -> LoraGeometry:
        return cls(tuple(LoraModuleGeometry(**m) for m in data["modules"]), data["rank"], data["alpha"])

    @classmethod
    def from_config(cls, config: PretrainedConfig, settings: LoraSettings) -> LoraGeometry:
        """Geometry from a model config alone: the model is built on the meta device, so no weights are read."""
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return cls.from_model(model, settings)


def peft_config(settings: LoraSettings) -> LoraConfig:
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )


def attach_lora(model: PreTrainedModel, settings: LoraSettings) -> PeftModel:
    """Wrap `model` with a fresh LoRA (PEFT's standard init: A random, B zero, so the output is unchanged)."""
    return get_peft_model(model, peft_config(settings))


@contextmanager
def kept_requires_grad(model: nn.Module) -> Iterator[None]:
    """`model`'s parameters need gradients after the block as they did before it. PEFT freezes the base weights it
    wraps and leaves them frozen when it unloads, and on a CPU greedy generation with frozen bf16 weights ran about
    4x slower (Qwen2.5-Coder-0.5B, 16 ARC prompts, 8 new tokens: 12.7 s against 3.2 s; one forward pass was not
    slower), so every generative score after a LoRA had been attached once paid it."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        yield
    finally:
        for name, parameter in model.named_parameters():
            if name in flags:
                parameter.requires_grad_(flags[name])


@contextmanager
def peft_model(lm: LoadedModel, settings: LoraSettings, state: dict[str, torch.Tensor] | None = None
               ) -> Iterator[PeftModel]:
    """The base model with a LoRA attached inside the block (loaded from `state` if given), bare, in eval mode
    and with its parameters' `requires_grad` as before after it, whatever happened inside."""
    with kept_requires_grad(lm.model):
        model = attach_lora(lm.model, settings)
        try:
            if state is not None:
                set_peft_model_state_dict(model, state)
            yield model
        finally:
            model.unload()
            lm.model.eval()


def lora_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """A PEFT model's LoRA weights as float32 CPU copies, under PEFT's adapter key names."""
    return {k: v.detach().float().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}


def read_lora_state(adapter_dir: str | Path) -> LoraState:
    """A PEFT adapter directory's LoRA weights as float32 tensors, under PEFT's adapter key names."""
    weights = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: {adapter_dir} is not a PEFT adapter directory")
    with safe_open(str(weights), framework="pt") as f:
        return {key: f.get_tensor(key).float() for key in f.keys()}  # noqa: SIM118 (not a mapping)


MAX_DELTA_RATIO = 10.0
"""The largest ||(alpha / r) B A|| / ||W|| an adapter may have in any module: trained LoRAs change a layer by a
small fraction of its norm, and an adapter rescaled by corruption changes it by orders of magnitude more."""


def read_adapter_shapes(adapter_dir: str | Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """`{module path: {"A": shape, "B": shape}}` from an adapter's safetensors header (no tensors loaded)."""
    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / ADAPTER_WEIGHTS
    for required in (adapter_dir / ADAPTER_CONFIG, weights):
        if not required.is_file():
            raise FileNotFoundError(f"{required} is missing: {adapter_dir} is not a PEFT adapter directory")
    from safetensors import SafetensorError

    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    try:
        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                match = _PEFT_KEY.match(key)
                if match is None:
                    raise AdapterMismatchError(f"{weights}: unexpected tensor {key!r} (not a LoRA A/B weight)")
                shape = tuple(f.get_slice(key).get_shape())
                shapes.setdefault(match["module"], {})[match["part"]] = shape
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights}: not readable safetensors ({e}); the file is truncated or corrupt") from None
    return shapes


def check_adapter_fits(adapter_dir: str | Path, model: nn.Module) -> None:
    """Refuse an adapter that would score garbage or silently leave layers without LoRA: a config that is not
    JSON or lacks fields, a module the model lacks, a module of the config's targets without both tensors
    (PEFT would leave it bare), a shape that does not fit (other rank or model), a NaN or Inf weight, a change
    of a layer larger than `MAX_DELTA_RATIO` times the layer itself (no trained LoRA comes near). Each error
    names the file, module and shapes. An adapter written for another base model of the same shapes is
    scored, with a warning."""
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / ADAPTER_CONFIG
    found = read_adapter_shapes(adapter_dir)
    try:
        config = json.loads(config_path.read_text())
        settings = LoraSettings(r=int(config["r"]), alpha=int(config.get("lora_alpha", config["r"])),
                                target_modules=tuple(config["target_modules"]))
    except (ValueError, KeyError, TypeError) as e:
        raise AdapterMismatchError(f"{config_path}: not a LoRA adapter config ({type(e).__name__}: {e})") from None
    expected = LoraGeometry.from_model(model, settings).by_path()
    for path in found.keys() - expected.keys():
        raise AdapterMismatchError(f"{adapter_dir}: module {path!r} does not exist in the model")
    for path, geometry in expected.items():  # model order, so the first mismatch reported is the shallowest
        want = {"A": geometry.a_shape, "B": geometry.b_shape}
        missing = [f"lora_{p}" for p in ("A", "B") if p not in found.get(path, {})]
        if missing:
            raise AdapterMismatchError(f"{adapter_dir}: module {path!r} has no {' and no '.join(missing)} tensor "
                                       f"(the config targets it; PEFT would leave it without LoRA)")
        for part, shape in sorted(found[path].items()):
            if shape != want[part]:
                raise AdapterMismatchError(
                    f"{adapter_dir}: module {path!r} lora_{part} has shape {tuple(shape)}, "
                    f"the model needs {want[part]} (adapter_config.json: r = {settings.r})"
                )
    with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            if not torch.isfinite(f.get_tensor(key)).all():
                raise AdapterMismatchError(f"{adapter_dir}: tensor {key} holds NaN or Inf values; refusing to "
                                           "score it")
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        modules = dict(base.named_modules())
        scale = settings.alpha / settings.r
        for path in expected:
            a, b = (f.get_tensor(f"base_model.model.{path}.lora_{p}.weight").double() for p in ("A", "B"))
            weight = getattr(modules[path], "base_layer", modules[path]).weight.detach().double()
            change = scale * float(((b.T @ b) * (a @ a.T)).sum().clamp(min=0).sqrt())
            ratio = change / max(float(weight.norm()), 1e-12)
            if ratio > MAX_DELTA_RATIO:
                raise AdapterMismatchError(
                    f"{adapter_dir}: module {path!r} would change its layer by {ratio:.3g}x the layer's own norm "
                    f"(||scale B A|| / ||W||; trained LoRAs stay far below {MAX_DELTA_RATIO:g}); refusing to score "
                    "a corrupt or rescaled adapter")
    _warn_on_other_base(config, config_path, base)


def other_base(config: dict, model: nn.Module) -> tuple[str, str] | None:
    """(the base model an adapter config names, the model it is applied to) when they differ, else None. An
    offline default is loaded from its cache directory and named by the hub id its weights came from."""
    from .registry import base_model_reference

    named = str(config.get("base_model_name_or_path") or "")
    loaded = str(getattr(model.config, "_name_or_path", "") or "")
    if not named or not loaded:
        return None
    if base_model_reference(loaded)[0] != base_model_reference(named)[0] and Path(loaded).name != Path(named).name:
        return named, loaded
    return None


def adapter_base_record(adapter_dir: str | Path, model: nn.Module) -> dict[str, Any] | None:
    """What an evaluation records of an adapter written for another base model than the one scored (None when
    they agree or the adapter names none): {"written_for", "applied_to"}."""
    adapter_dir = Path(adapter_dir)
    configs = [adapter_dir / ADAPTER_CONFIG, *sorted(adapter_dir.glob(f"members/*/{ADAPTER_CONFIG}"))]
    for path in configs:
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return None  # check_adapter_fits refuses it, naming the file
            found = other_base(config, model) if isinstance(config, dict) else None
            return {"written_for": found[0], "applied_to": found[1]} if found else None
    return None


def _warn_on_other_base(config: dict, config_path: Path, model: nn.Module) -> None:
    """Say so when the adapter names another base model than the one it is applied to (shapes fit, so it may
    be meant: a base model's adapter on its instruct sibling), naming both; the evaluation's results.json
    records it too (`adapter_base_record`)."""
    import sys

    found = other_base(config, model)
    if found:
        print(f"degaml: warning: {config_path} was written for base model {found[0]!r}, and is applied to "
              f"{found[1]!r}", file=sys.stderr)


def load_adapter(model: PreTrainedModel, adapter_dir: str | Path, trainable: bool = False) -> PeftModel:
    """Apply a PEFT adapter directory to `model` after checking that it fits."""
    check_adapter_fits(adapter_dir, model)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def delta_inner(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    """<dW1, dW2> summed over modules, with dW = B A (PEFT keys), without forming any dW:
    <B1 A1, B2 A2>_F = sum((B1^T B2) * (A1 A2^T)), two r x r products per module."""
    total = 0.0
    for key, a1 in first.items():
        if ".lora_A." not in key:
            continue
        b_key = key.replace(".lora_A.", ".lora_B.")
        a2, b1, b2 = second[key].double(), first[b_key].double(), second[b_key].double()
        total += float(((b1.T @ b2) * (a1.double() @ a2.T)).sum())
    return total


def delta_norm(state: dict[str, torch.Tensor]) -> float:
    """Frobenius norm of every module's dW = B A together (the LoRA scale alpha / r left out)."""
    return max(delta_inner(state, state), 0.0) ** 0.5


def delta_cosine(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    denominator = delta_norm(first) * delta_norm(second)
    return delta_inner(first, second) / denominator if denominator > 0 else 0.0


def delta_change_cosine(moved: dict[str, torch.Tensor], start: dict[str, torch.Tensor],
                        direction: dict[str, torch.Tensor]) -> float:
    """cos(dW_moved - dW_start, dW_direction) over all modules, from inner products: whether an adapter moved
    from `start` toward `direction` (0 when it did not move)."""
    along = delta_inner(moved, direction) - delta_inner(start, direction)
    change = delta_inner(moved, moved) - 2 * delta_inner(moved, start) + delta_inner(start, start)
    denominator = max(change, 0.0) ** 0.5 * delta_norm(direction)
    return along / denominator if denominator > 0 else 0.0


def delta_relative_error(decoded: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> float:
    """||dW_decoded - dW_target|| / ||dW_target||, from inner products."""
    squared = delta_inner(decoded, decoded) - 2 * delta_inner(decoded, target) + delta_inner(target, target)
    return max(squared, 0.0) ** 0.5 / max(delta_norm(target), 1e-30)


def weighted_adapter_sum(states: Sequence[LoraState], weights: Sequence[float]) -> LoraState:
    """sum_k w_k A_k and sum_k w_k B_k (LoraHub's combination; the retrieval mixture's too)."""
    if len(states) != len(weights) or not states:
        raise ValueError(f"need one weight per adapter: {len(states)} adapters, {len(weights)} weights")
    keys = states[0].keys()
    for i, s in enumerate(states[1:], start=1):
        if s.keys() != keys:
            raise ValueError(f"adapter {i} has other modules than adapter 0")
    return {k: sum(float(w) * s[k].float() for w, s in zip(weights, states)) for k in keys}
