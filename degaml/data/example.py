"""The one example type every task produces: a multiple-choice item."""

from __future__ import annotations

from dataclasses import dataclass


class DataFormatError(ValueError):
    """A data record cannot be turned into an item; the message names the file, record and field."""


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One question with its answer options.

    `question` and `choices` are what a reader sees (the generative protocol and the prompt encoder use
    them). `contexts[i]` and `continuations[i]` are the log-likelihood request of choice i, exactly as
    lm-evaluation-harness builds it: usually one shared context and " " + choice; for partial scoring
    (WinoGrande) one context per choice and a shared continuation.
    """

    id: str
    question: str
    choices: tuple[str, ...]
    gold: int
    contexts: tuple[str, ...]
    continuations: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.choices)
        if n < 2:
            raise DataFormatError(f"item {self.id!r}: field 'choices' needs at least two options, got {n}")
        if not 0 <= self.gold < n:
            raise DataFormatError(f"item {self.id!r}: field 'gold' is {self.gold}, outside 0..{n - 1}")
        if len(self.contexts) != n or len(self.continuations) != n:
            raise DataFormatError(f"item {self.id!r}: need one context and one continuation per choice")

    @classmethod
    def cloze(cls, id: str, question: str, context: str, choices: list[str] | tuple[str, ...], gold: int,
              delimiter: str = " ") -> MultipleChoiceItem:
        """Score each answer text after one shared context (the harness's `multiple_choice` output type)."""
        choices = tuple(str(c) for c in choices)
        return cls(id=str(id), question=question, choices=choices, gold=int(gold),
                   contexts=(context,) * len(choices), continuations=tuple(delimiter + c for c in choices))

    @property
    def shares_context(self) -> bool:
        return len(set(self.contexts)) == 1

    @property
    def prompt(self) -> str:
        """The unlabelled prompt a model sees (no answer): the shared context, else the question text."""
        return self.contexts[0] if self.shares_context else self.question
