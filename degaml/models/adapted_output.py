"""Adapted outputs: the directories an adaptation family or a baseline writes and `degaml evaluate
--adapter` scores. One owner for the format, so writers and readers never index each other's files.

    plain          a PEFT adapter directory (adapter_config.json, adapter_model.safetensors) + degaml.json
    latent-task    + latent_delta.safetensors: one vector added before the LM head for every item
    latent-sample  + degaml.json["latent"] with scope "sample": SLOT settings, a fresh delta fitted per item
    calibrated     + degaml.json["latent"] with objective "calibrate": the adapter's option scores calibrated
                   without labels at scoring time (degaml/evaluation/calibration.py)
    tts            tts.json {"combine": vote | confidence | mean, "members": [relative dirs], ...} and one
                   plain adapter directory per member

Every directory is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

from ..config import LoraSettings
from ..io import atomic_directory, atomic_write_json, read_json_object
from .cards import CARD_FILE, adapter_card
from .lora import ADAPTER_WEIGHTS, peft_config
from .registry import base_model_reference

INFO_FILE = "degaml.json"
"""How the output was made (action, generation, seconds, fallbacks); SLOT settings for latent-sample."""
LATENT_FILE = "latent_delta.safetensors"
TTS_FILE = "tts.json"
Kind = Literal["plain", "latent-task", "latent-sample", "calibrated", "tts"]
LOGLIKELIHOOD_ONLY: tuple[Kind, ...] = ("latent-sample", "calibrated")
"""Kinds whose scoring reads every option's log-likelihood: the generative protocol cannot score them (an
ensemble it can: its members' named letters are voted)."""


def _kind(info: dict, has_latent_delta: bool) -> Kind:
    """The kind of a non-ensemble output from its degaml.json and whether it holds a latent delta."""
    latent = info.get("latent", {})
    if has_latent_delta:
        return "latent-task"
    if latent.get("objective") == "calibrate":
        return "calibrated"
    return "latent-sample" if latent.get("scope") == "sample" else "plain"


def write_adapter(state_dict: dict[str, torch.Tensor], lora: LoraSettings, base_model: str, out: Path,
                  info: dict | None = None, latent_delta: torch.Tensor | None = None,
                  tensors: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """A PEFT adapter directory from a LoRA state dict (PEFT keys), written atomically; `info` goes to
    degaml.json, `latent_delta` makes it a latent-task output, `tensors` ({file name: tensors}) are further
    safetensors files a method keeps beside its adapter."""
    reference, note = base_model_reference(base_model)
    record = {**(info or {}), "base_model": base_model, "base_model_name_or_path": reference}
    kind = _kind(info or {}, latent_delta is not None)
    with atomic_directory(out) as tmp:
        config = peft_config(lora)
        config.base_model_name_or_path = reference
        config.save_pretrained(str(tmp))
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp / ADAPTER_WEIGHTS))
        atomic_write_json(tmp / INFO_FILE, record)
        if latent_delta is not None:
            save_file({"delta": latent_delta.float().cpu().contiguous()}, str(tmp / LATENT_FILE))
        (tmp / CARD_FILE).write_text(adapter_card(kind, reference, note, _licence(base_model), record))
        for name, group in (tensors or {}).items():
            save_file({k: v.contiguous() for k, v in group.items()}, str(tmp / name))
    return Path(out)


def write_ensemble(members: Sequence[tuple[dict[str, torch.Tensor], dict]], lora: LoraSettings, base_model: str,
                   out: Path, combine: str, info: dict,
                   tensors: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """A test-time-scaling ensemble: one adapter per (state, member info), combined at scoring time by
    `combine`; `info` (with `combine` and `members` added) goes to tts.json. Returns that record."""
    record = {**info, "combine": combine, "members": [f"members/{i}" for i in range(len(members))]}
    with atomic_directory(out) as tmp:
        for name, (state, member_info) in zip(record["members"], members):
            write_adapter(state, lora, base_model, tmp / name, member_info)
        for name, group in (tensors or {}).items():
            save_file({k: v.contiguous() for k, v in group.items()}, str(tmp / name))
        atomic_write_json(tmp / TTS_FILE, record)
        reference, note = base_model_reference(base_model)
        (tmp / CARD_FILE).write_text(adapter_card("tts", reference, note, _licence(base_model), record))
    return record


def copy_output(source: Path, out: Path) -> Path:
    """An adapted output copied whole to `out`, atomically (a method that reuses another's very output)."""
    import shutil

    with atomic_directory(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return Path(out)


def _licence(base_model: str) -> str:
    """The adapter's licence: Apache-2.0 (degaml's) unless the base model's terms say otherwise."""
    from .registry import OFFLINE_MODELS

    offline = OFFLINE_MODELS.get(base_model)
    return "apache-2.0" if offline is None or offline.licence == "Apache-2.0" else "other"


@dataclass(frozen=True)
class AdaptedOutput:
    """An adapted-output directory as evaluation needs it."""

    directory: Path
    kind: Kind
    info: dict = field(default_factory=dict)
    """degaml.json (tts.json for an ensemble)."""

    @classmethod
    def load(cls, directory: Path) -> AdaptedOutput:
        directory = Path(directory)
        if (directory / TTS_FILE).is_file():
            info = read_json_object(directory / TTS_FILE)
            if not isinstance(info.get("members"), list) or "combine" not in info:
                raise ValueError(f"{directory / TTS_FILE}: an ensemble record needs 'members' (a list) and 'combine'")
            return cls(directory, "tts", info)
        info_path = directory / INFO_FILE
        info = read_json_object(info_path) if info_path.is_file() else {}
        return cls(directory, _kind(info, (directory / LATENT_FILE).is_file()), info)

    @property
    def members(self) -> list[Path]:
        """Member adapter directories of an ensemble; the directory itself otherwise."""
        return [self.directory / m for m in self.info["members"]] if self.kind == "tts" else [self.directory]

    @property
    def base_model(self) -> str:
        """The base model the adapter (an ensemble's first member) was written for, as degaml names it (an
        offline default's short name; adapter_config.json names the hub model its weights came from)."""
        member = read_json_object(self.members[0] / INFO_FILE) if (self.members[0] / INFO_FILE).is_file() else {}
        if member.get("base_model"):
            return member["base_model"]
        config = self.members[0] / "adapter_config.json"
        try:
            return json.loads(config.read_text())["base_model_name_or_path"]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{config}: no base model recorded ({type(e).__name__}: {e})") from None

    @property
    def combine(self) -> str:
        return self.info["combine"]

    @property
    def latent_settings(self) -> dict:
        """SLOT settings of a latent-sample output (steps, lr, max_tokens)."""
        return self.info["latent"]

    def scoring_digest(self) -> str:
        """Equal for two outputs that score alike: a hash of what evaluation reads (each member's adapter
        weights and config, the latent delta, the SLOT and combination settings), not of the bookkeeping
        (seconds, provenance) in degaml.json. Lets a run score one adapter once when two methods write it."""
        digest = hashlib.sha256(json.dumps({"kind": self.kind, "combine": self.info.get("combine"),
                                            "latent": self.info.get("latent")}, sort_keys=True).encode())
        for member in self.members:
            for name in ("adapter_config.json", ADAPTER_WEIGHTS, LATENT_FILE):
                path = member / name
                digest.update(f"{name}:{path.stat().st_size if path.is_file() else -1}:".encode())
                if path.is_file():
                    digest.update(path.read_bytes())
        return digest.hexdigest()

    def latent_delta(self, hidden_size: int) -> torch.Tensor:
        """The task-level delta, refused (naming the file) unless it is one finite vector of `hidden_size`."""
        path = self.directory / LATENT_FILE
        try:
            delta = load_file(str(path))["delta"]
        except Exception as e:  # safetensors raises several types for truncated or corrupt files
            raise ValueError(f"{path}: not a latent delta ({type(e).__name__}: {e})") from None
        if tuple(delta.shape) != (hidden_size,):
            raise ValueError(f"{path}: the delta has shape {tuple(delta.shape)}, the model's hidden size is "
                             f"{hidden_size} (a delta for another model?)")
        if not torch.isfinite(delta).all():
            raise ValueError(f"{path}: the delta holds NaN or Inf values")
        return delta
