"""The generator side's typed settings, torch-free (a command's `--help` is built from them without loading
torch): trajectory collection (`CollectConfig`) and the decoder's shapes (`DecoderConfig`, `NAMED_DECODERS`). The
generator's training settings are `record.GeneratorTrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import AnswerFormat

Shape = tuple[int, int, int]


@dataclass
class DecoderConfig:
    hidden_shapes: list[Shape] = field(default_factory=lambda: [(32, 32, 128), (128, 16, 130)])
    """(N, H, W) between the condition and the tokens; the ends come from the encoder and the LoRA layout."""
    kernel_size: int = 3
    head_rank: int = 0
    """> 0: beside the convolutions, a task-code head adds U z to the tokens, z a `head_rank`-dim code of the mean
    prompt embedding and U one learned direction per code dimension over every token (starts at zero). 0: none."""

    def __post_init__(self) -> None:
        self.hidden_shapes = [tuple(s) for s in self.hidden_shapes]
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {self.kernel_size}")
        if self.head_rank < 0:
            raise ValueError(f"head_rank must be >= 0, got {self.head_rank}")


NAMED_DECODERS: dict[str, DecoderConfig] = {
    # The reference configuration for Qwen2.5-0.5B at r 8: condition (128, 384, 384), tokens (4296, 10, 130).
    "paper-qwen2.5-0.5b": DecoderConfig(
        hidden_shapes=[(128, 200, 300), (128, 100, 256), (256, 50, 200), (512, 50, 200), (1024, 25, 200),
                       (1024, 10, 200), (2048, 10, 200)], kernel_size=9),
    # The reference configuration for Qwen2.5-1.5B at r 16 (public Drag-and-Drop configs): tokens (4508, 18, 258).
    "paper-qwen2.5-1.5b": DecoderConfig(
        hidden_shapes=[(64, 500, 300), (256, 500, 300), (512, 125, 300), (1024, 64, 256), (2048, 32, 256)],
        kernel_size=11),
    # Sized for a 2-core CPU: a few million parameters.
    "cpu-small": DecoderConfig(hidden_shapes=[(32, 32, 128), (128, 16, 130)], kernel_size=3),
    # cpu-small with its last hidden map widened to 288 channels. Every parameter token is a readout of a 3 x 3
    # neighbourhood of that map, so the tokens of all tasks at one position span at most channels x 9 directions:
    # 1,152 in cpu-small, against SmolLM2-135M's 2,550 tokens at r 8; 288 x 9 = 2,592 lifts that bound.
    "cpu-wide": DecoderConfig(hidden_shapes=[(32, 32, 128), (288, 16, 130)], kernel_size=3),
    # cpu-small plus a 32-dim task-code head. The convolutions share their weights across token positions, so
    # their output for many tasks at once is hard to make position-specific: on 28 seen tasks' trajectories
    # cpu-small's and cpu-wide's reconstruction loss stalled near 0.54 (0.84 over the first 10 steps), on 3 it kept
    # falling. The head gives every token its own weights on a task code, as Text-to-LoRA's output heads do.
    "cpu-small-head32": DecoderConfig(hidden_shapes=[(32, 32, 128), (128, 16, 130)], kernel_size=3, head_rank=32),
    "cpu-tiny": DecoderConfig(hidden_shapes=[(16, 16, 64)], kernel_size=3),
}


@dataclass
class CollectConfig:
    burn_in_steps: int = 30
    """Optimizer steps before the trajectory phase (not saved)."""
    checkpoints: int = 50
    """Consecutive steps whose LoRA state is saved (the reference keeps 50)."""
    batch_size: int = 4
    gradient_accumulation: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size x gradient_accumulation)."""
    lr: float = 1e-4
    """Constant AdamW learning rate."""
    max_tokens: int = 256
    seed: int = 0
    answer_format: AnswerFormat = "loglikelihood"
    """What the LoRA learns to produce: the answer text after its context (as log-likelihood scores it) or the
    generative protocol's "[B]" after the lettered prompt (`degaml run` follows `evaluation.protocol`)."""
    start: str = ""
    """A PEFT adapter directory every trajectory starts from (its A and B), so that the checkpoints are that
    adapter plus the task's own change; empty: PEFT's init (B = 0). In a `degaml run`, `union` is union LoRA of
    the meta-training tasks (the shared generator's residual base), which the run trains first."""

    def __post_init__(self) -> None:
        for name, minimum in (("burn_in_steps", 0), ("checkpoints", 1), ("batch_size", 1),
                              ("gradient_accumulation", 1), ("max_tokens", 1)):
            if getattr(self, name) < minimum:
                raise ValueError(f"collect.{name} must be >= {minimum}, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"collect.lr must be > 0, got {self.lr}")

    @property
    def total_steps(self) -> int:
        return self.burn_in_steps + self.checkpoints
