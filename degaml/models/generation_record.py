"""What the generator records of one generated adapter: its prompts (how many, their hash, whether they were
drawn with replacement), seed and timings. Written flat into the adapter's degaml.json beside what an
adaptation or a baseline adds, and read back through this class (cards, the CLI, the demo), never by keys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class GenerationRecord:
    generator: str
    """The generator directory (or Hub id) it came from."""
    prompts_given: int
    prompts_used: int
    """The generator's prompt slots (N): filled from the given prompts."""
    prompts_sha256: str
    """Of the given prompts joined by newlines."""
    sampled_with_replacement: bool
    """Fewer prompts were given than the generator reads: they were drawn with replacement to fill its slots."""
    seed: int
    encode_seconds: float
    decode_seconds: float
    generation_seconds: float
    task: str = ""
    """The task's name, where the prompts came from a named task or the caller gave one."""

    def to_info(self) -> dict[str, Any]:
        """The degaml.json keys (no `task` when it has none)."""
        record = asdict(self)
        return record if self.task else {k: v for k, v in record.items() if k != "task"}

    @classmethod
    def from_info(cls, info: dict[str, Any], where: str = "degaml.json") -> GenerationRecord | None:
        """The record in a degaml.json's keys; None for an output the generator did not make (a baseline's)."""
        if "prompts_sha256" not in info:
            return None
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n != "task" and n not in info]
        if missing:
            raise ValueError(f"{where}: a generated adapter's record lacks {', '.join(missing)}")
        return cls(**{n: info[n] for n in names if n in info})

    @property
    def conditioning(self) -> str:
        """How many distinct prompts it was conditioned on, in words: with fewer prompts than the generator reads,
        the given ones were drawn with replacement to fill its slots, and this says so instead of "16 of 3"."""
        if self.sampled_with_replacement:
            return (f"the {self.prompts_given} unlabelled prompts given, drawn with replacement to fill the "
                    f"generator's {self.prompts_used} prompt slots")
        return f"{self.prompts_used} of the {self.prompts_given} unlabelled prompts given"
