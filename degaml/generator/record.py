"""A trained generator's record (its config.json): how it was trained, its shapes, the model and LoRA it
generates for, and which tasks it saw. Written once by training, read by `Generator` and everyone else
through this class, never by string keys."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from ..config import AnswerFormat, LoraSettings, StatCode
from ..data.prompts import PromptFormat
from ..io import atomic_write_json, read_json_object
from .objectives import OBJECTIVES
from .settings import NAMED_DECODERS, DecoderConfig

Objective = Literal["reconstruction", "task_loss", "hybrid"]
"""The names of `objectives.OBJECTIVES` (a Literal, so that configs and `--help` list them)."""
RECORD_FILE = "config.json"


RECIPES = Path(__file__).resolve().parents[1] / "configs" / "generator"
"""Named generator recipes, one YAML file each (`configs/generator/<name>.yaml`)."""
RECIPE_FIELDS = ("objective", "task_loss_weight", "task_examples", "task_loss_kind", "choice_options", "anchor",
                 "residual", "residual_base", "stat_code", "token_weighting", "prompt_format", "contrast", "contrast_margin")
"""What a recipe fixes: how the generator learns, never how long (steps, batch, learning rate stay the caller's)."""


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def load_recipe(name: str) -> dict:
    """A recipe's settings, by name or by path to a YAML file; refused with the file and key at fault."""
    import yaml

    path = Path(name) if name.endswith((".yaml", ".yml")) else RECIPES / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"generator.recipe: no recipe {name!r}; named recipes: {', '.join(recipe_names())} "
                         "(or a path to a .yaml file)")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not readable YAML ({type(e).__name__})") from None
    unknown = sorted(set(recipe) - set(RECIPE_FIELDS)) if isinstance(recipe, dict) else ["(not a mapping)"]
    if unknown:
        raise ValueError(f"{path}: a recipe sets only {', '.join(RECIPE_FIELDS)}; found {unknown}")
    return recipe


TRAINED_FILE = "trained.json"


@dataclass(frozen=True)
class TrainingProgress:
    """How far a generator's training has gone (TRAINED_FILE), written with the weights of that step: a generator
    whose training was cut short is refused for generation (`generation.refuse_unfinished`)."""

    step: int
    steps: int

    @property
    def finished(self) -> bool:
        return self.step >= self.steps

    def save(self, directory: Path) -> None:
        atomic_write_json(Path(directory) / TRAINED_FILE, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> TrainingProgress | None:
        """The record in `directory`, None where there is none (a generator from before it or from the Hub)."""
        path = Path(directory) / TRAINED_FILE
        if not path.is_file():
            return None
        record = read_json_object(path, "training progress")
        try:
            return cls(**record)
        except TypeError as e:
            raise ValueError(f"{path}: not a training progress record ({e})") from None


@dataclass
class GeneratorTrainConfig:
    recipe: str = ""
    """A named recipe (`configs/generator/<name>.yaml`; `degaml train-generator --help` lists them) or a recipe
    file: it sets the fields of `RECIPE_FIELDS`. Those fields may then be left at their defaults or repeat the
    recipe's values; a different value is refused. Applied once, when the config is made: `recipe` is then
    empty and `applied_recipe` records it."""
    applied_recipe: str = ""
    """The recipe these fields came from (a record: never applied again)."""
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
    objective: Objective = "reconstruction"
    """reconstruction (the paper) | task_loss (causal-LM loss of the generated adapter) | hybrid (both)."""
    task_loss_weight: float = 1.0
    """hybrid: reconstruction + task_loss_weight * task_loss."""
    task_examples: int = 4
    """task_loss / hybrid: labelled train examples of each sampled task per step."""
    max_tokens: int = 128
    """task_loss / hybrid: longest example (left-truncated)."""
    task_loss_kind: Literal["answer", "choice"] = "answer"
    """task_loss / hybrid: `answer` (the gold answer's token cross-entropy) or `choice` (cross-entropy over
    each item's options, scored by mean answer-token log-likelihood); degaml/generator/function_space.py."""
    answer_format: AnswerFormat = "loglikelihood"
    """task_loss / hybrid: the format of the labelled examples, as the trajectories were collected in
    (`CollectConfig.answer_format`; `degaml run` follows `evaluation.protocol`)."""
    choice_options: int = 0
    """task_loss_kind choice: options per item in the loss, the gold one and `choice_options - 1` others drawn once
    per item (seeded by the item's id), a sampled softmax; 0 keeps every option. Bounds the rows (and the logits'
    memory) per item where meta-training tasks have tens of options."""
    anchor: float = 0.0
    """task_loss / hybrid: weight of the KL from the base model to the adapted one at the examples' context
    positions (degaml/generator/function_space.py); 0 trains on the answer loss alone."""
    contrast: float = 0.0
    """task_loss / hybrid: weight of the prompt-contrast term. Each sample also generates an adapter from another
    training task's prompts, and pays `max(0, contrast_margin - (its task loss - the own adapter's task loss))`
    on the sample's examples: the adapter from a task's own prompts must fit that task better than one from
    other prompts, which a generator that ignores its prompts cannot do. Costs a second generated adapter and
    task loss per sample."""
    contrast_margin: float = 0.1
    """contrast: the loss gap (nats) beyond which the term stops pushing."""
    model_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """task_loss / hybrid: dtype of the frozen base model (the generated adapter stays float32)."""
    residual: bool = False
    """Predict a change to a base adapter (a collapsed generator is that adapter): the mean training adapter,
    or `residual_base`."""
    residual_base: str = ""
    """residual: a PEFT adapter directory whose tokens initialize the base instead of the mean training
    adapter, e.g. a union LoRA of the same training tasks (then a collapsed generator is union LoRA and any
    task signal shows as a gain over it). `init_from` overrides it. In a `degaml run` config, `union` makes the
    run train that union LoRA itself (the union baseline's meta-training on the generator's tasks)."""
    stat_code: StatCode = "paper"
    """How a token stores its piece's statistics: `paper` (std log(0.9 s + 0.1) + 1.6, mean 8 m), `log`
    (std log s) or `relative` (std log s, mean m / s); see degaml/lora_tokens.py."""
    token_weighting: Literal["per_task", "averaged"] = "per_task"
    """Reconstruction weights per token: each task's own, or averaged over the training tasks (reference)."""
    prompt_format: PromptFormat = "question"
    """Conditioning prompts: the question alone, or with its options as "A: ..." lines."""
    diagnostic_tasks: int = 16
    """Training tasks (a seeded sample) whose generated adapters the task-dependence diagnostics hold in memory at
    once; held-out tasks are all diagnosed. Unbounded, 152 tasks took 24 GB."""
    diagnostic_draws: int = 3
    """Prompt draws per task for the task-dependence diagnostics (>= 2)."""
    init_from: str = ""
    """A trained generator directory whose decoder weights training starts from (continued meta-training on
    more tasks); it must have the same decoder shapes. Empty: a fresh initialization."""

    def __post_init__(self) -> None:
        if self.recipe:
            self._apply_recipe()
        for name, minimum in (("num_prompts", 1), ("prompt_tokens", 1), ("max_prompts", 1), ("chunk", 1), ("steps", 0),
                              ("batch_size", 1), ("eval_every", 1), ("task_examples", 1), ("max_tokens", 1),
                              ("choice_options", 0)):
            if getattr(self, name) < minimum:
                raise ValueError(f"generator.{name} must be >= {minimum}, got {getattr(self, name)}")
        if self.lr < 0 or self.weight_decay < 0:
            raise ValueError(f"generator.lr and generator.weight_decay must be >= 0, got {self.lr} and {self.weight_decay}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"generator.objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.diagnostic_tasks < 2:
            raise ValueError(f"diagnostic_tasks must be >= 2, got {self.diagnostic_tasks}")
        if self.diagnostic_draws < 2:
            raise ValueError(f"diagnostic_draws must be >= 2, got {self.diagnostic_draws}")
        if self.task_loss_kind not in ("answer", "choice"):
            raise ValueError(f"task_loss_kind must be answer or choice, got {self.task_loss_kind!r}")
        if self.anchor < 0 or (self.anchor > 0 and not OBJECTIVES[self.objective].needs_model):
            raise ValueError(f"anchor must be >= 0 and needs a task_loss or hybrid objective, got {self.anchor} "
                             f"with {self.objective!r}")
        if self.contrast < 0 or self.contrast_margin < 0 or (self.contrast > 0 and not OBJECTIVES[self.objective].needs_model):
            raise ValueError(f"contrast and contrast_margin must be >= 0, and contrast needs a task_loss or hybrid "
                             f"objective, got {self.contrast}, {self.contrast_margin} with {self.objective!r}")
        if self.residual_base and not self.residual:
            raise ValueError(f"residual_base {self.residual_base!r} needs residual = true")
        if self.token_weighting not in ("per_task", "averaged"):
            raise ValueError(f"token_weighting must be per_task or averaged, got {self.token_weighting!r}")


    def _apply_recipe(self) -> None:
        defaults = GeneratorTrainConfig()
        for key, value in load_recipe(self.recipe).items():
            mine = getattr(self, key)
            if mine != getattr(defaults, key) and mine != value:
                raise ValueError(f"generator.{key} = {mine!r} contradicts recipe {self.recipe!r} ({key}: {value!r}); "
                                 "drop one of them")
            setattr(self, key, value)
        self.applied_recipe, self.recipe = self.recipe, ""


def decoder_config(name: str) -> DecoderConfig:
    if name not in NAMED_DECODERS:
        raise ValueError(f"unknown decoder {name!r}; known: {', '.join(NAMED_DECODERS)}")
    return NAMED_DECODERS[name]


@dataclass
class GeneratorRecord:
    train: GeneratorTrainConfig
    decoder_shapes: list[tuple[int, int, int]]
    """(N, H, W) from the condition through the hidden layers to the parameter tokens."""
    kernel_size: int
    parameters: int
    model: str
    """The base model the adapters are for."""
    lora: LoraSettings
    geometry: dict
    """The LoRA geometry (`LoraGeometry.to_dict()`): every module's path and shapes."""
    trajectories: str
    """Absolute path of the trajectories it was trained on (LoraHub's library comes from there)."""
    train_tasks: list[str] = field(default_factory=list)
    heldout_tasks: list[str] = field(default_factory=list)
    prompts_with_replacement: list[str] = field(default_factory=list)
    """Training tasks with fewer prompts than N (their conditions sample with replacement)."""
    compute: dict | None = None
    """The base model's device and dtype during training, and why (`LoadedModel.compute()`); None for the
    reconstruction objective, which never runs the base model."""
    head_rank: int = 0
    """The decoder's task-code head rank (`DecoderConfig.head_rank`); 0, none (and every record from before it)."""

    def save(self, directory: Path) -> Path:
        record = asdict(self)
        atomic_write_json(Path(directory) / RECORD_FILE, record)
        write_readme(Path(directory), self)
        return Path(directory) / RECORD_FILE

    @classmethod
    def load(cls, directory: Path) -> GeneratorRecord:
        path = Path(directory) / RECORD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a trained generator ({RECORD_FILE} is missing)")
        try:
            record = json.loads(path.read_text())
            known = {f.name for f in fields(cls)}
            record = {k: v for k, v in record.items() if k in known}  # older records carried max_prompts twice
            record["train"] = GeneratorTrainConfig(**record["train"])
            record["lora"] = LoraSettings(**record["lora"])
            record["decoder_shapes"] = [tuple(s) for s in record["decoder_shapes"]]
            return cls(**record)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a generator record ({type(e).__name__}: {e})") from None


def write_readme(directory: Path, record: GeneratorRecord) -> None:
    """The generator's Hub model card (README.md): what it makes adapters for, how it was trained, how to use it."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..io import package_versions
    from ..models.registry import base_model_reference

    base, note = base_model_reference(record.model)
    t = record.train
    data = ModelCardData(base_model=base, license="apache-2.0", tags=["degaml", "lora-generator", "hypernetwork"])
    tasks = ", ".join(record.train_tasks[:20]) + (f" and {len(record.train_tasks) - 20} more" if len(record.train_tasks) > 20
                                                 else "")
    body = f"""# degaml generator

A DeGAML-LLM generalization module: from a few unlabelled prompts of a new task it generates a rank-{record.lora.r}
LoRA for `{base}`{f" ({note})" if note else ""} in one forward pass.

- Trained with degaml {package_versions()["degaml"]}, recipe `{t.applied_recipe or "custom"}` (objective `{t.objective}`), {t.steps} steps,
  seed {t.seed}; {record.parameters:,} decoder parameters; prompt encoder `{t.encoder}`, {t.num_prompts} prompts per
  condition in the `{t.prompt_format}` format.
- Trained on {len(record.train_tasks)} tasks: {tasks}.
- Held out: {", ".join(record.heldout_tasks) or "none"}.

Use it (degaml loads a repository id like a local directory):

```bash
degaml generate --generator <this repository or directory> --prompts my_task.jsonl --out my_adapter
```

Everything about its training is in `config.json`; the training log in `log.jsonl`.
"""
    (Path(directory) / "README.md").write_text(str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")))
