"""DeGAML-k's supervised choice: with k labelled target examples, the adaptation module decides whether
supervised steps help and from which starting adapter, instead of always fine-tuning the generated one.

The k examples are split once (seeded) into a fitting part and a selection part. Every starting adapter
(the generated one; the policy's label-free adaptation of it, when that is a plain adapter of its own) is a
candidate as it is and after the budget's optimizer steps on the fitting part; the candidate with the
lowest choice loss on the selection part is the result: the cross-entropy of the gold option against the
item's other options, as accuracy reads them (the answer-token loss would reward learning the answer format).
The k-label baselines' optimizer-step budget is split between the fine-tuned candidates (8 steps, two starts:
4 each), so DeGAML-k takes as many target-side steps in all as each baseline (`target_steps` counts them, and
the report shows them beside the baselines'). Selection examples are never trained on, so a fine-tuned
candidate cannot win by memorising them. The result is not refit on all k, and it reads the same k labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..choice import ChoiceExample, answer_logits, choice_example, choice_loss, collate_choices
from ..config import AnswerFormat, LoraSettings
from ..data import MultipleChoiceItem
from ..models import LoadedModel, LoraState, peft_model
from ..sft import fine_tune, training_example

FINE_TUNED = " + fine-tune"
"""Suffix of a candidate's name when it took the supervised steps."""


@dataclass
class SupervisedChoice:
    state: LoraState
    choice: str
    """The winning candidate, e.g. "generated + fine-tune"."""
    selection_losses: dict[str, float]
    """Every candidate's choice loss on the selection examples."""
    fit_examples: int
    selection_examples: int
    target_steps: int = 0
    """Optimizer steps taken on the target's labelled examples, over every fine-tuned candidate."""
    support_losses: dict[str, list[float]] = field(default_factory=dict)
    """The fine-tuned candidates' training losses."""

    def record(self) -> dict:
        """Everything but the weights, for the output's degaml.json."""
        return {"choice": self.choice, "selection_losses": self.selection_losses, "fit_examples": self.fit_examples,
                "selection_examples": self.selection_examples, "target_steps": self.target_steps,
                "support_losses": self.support_losses}


def split_support(support: Sequence[MultipleChoiceItem], select: int, seed: int
                  ) -> tuple[list[MultipleChoiceItem], list[MultipleChoiceItem]]:
    """(fitting part, selection part): `select` examples drawn without replacement, seeded."""
    if not 0 < select < len(support):
        raise ValueError(f"select = {select}: must leave at least one of the {len(support)} support examples on "
                         f"each side of the split")
    order = torch.randperm(len(support), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:select])
    return [e for i, e in enumerate(support) if i not in held], [support[i] for i in sorted(held)]


def choose_supervised(lm: LoadedModel, lora: LoraSettings, starts: Mapping[str, LoraState],
                      support: Sequence[MultipleChoiceItem], select: int, steps: int, lr: float, batch_size: int,
                      seed: int, max_tokens: int = 256, answer_format: AnswerFormat = "loglikelihood"
                      ) -> SupervisedChoice:
    """The candidate (each of `starts`, as it is and fine-tuned on the fitting part) with the lowest choice
    loss on the `select` held-out support items. `steps` is the budget of all the fine-tuned candidates together,
    split as evenly as it goes (the first starts take the remainder)."""
    if not starts:
        raise ValueError("choose_supervised needs at least one starting adapter")
    fit_items, held_items = split_support(support, select, seed)
    fit = [training_example(lm, item, max_tokens, answer_format=answer_format) for item in fit_items]
    held = [choice_example(lm, item, max_tokens, answer_format=answer_format) for item in held_items]
    candidates: dict[str, LoraState] = {}
    traces: dict[str, list[float]] = {}
    share, extra = divmod(steps, len(starts))
    for i, (name, start) in enumerate(starts.items()):
        candidates[name] = start
        if (own := share + (i < extra)) > 0:
            candidates[name + FINE_TUNED], traces[name + FINE_TUNED] = fine_tune(
                lm, lora, fit, own, lr, batch_size, seed, init=start)
    losses = {name: choice_set_loss(lm, lora, state, held) for name, state in candidates.items()}
    best = min(losses, key=losses.__getitem__)
    return SupervisedChoice(candidates[best], best, losses, len(fit), len(held), steps, traces)


@torch.no_grad()
def choice_set_loss(lm: LoadedModel, lora: LoraSettings, state: LoraState, examples: Sequence[ChoiceExample],
                    chunk: int = 8) -> float:
    """The mean choice loss of `examples` under the adapter `state` (every item weighs the same)."""
    total = 0.0
    with peft_model(lm, lora, state) as model:
        model.eval()
        for i in range(0, len(examples), chunk):
            part = examples[i:i + chunk]
            batch = collate_choices(lm, part)
            loss = choice_loss(answer_logits(model, batch), batch)
            total += float(loss) * len(part)
    return total / len(examples)
