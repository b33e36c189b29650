"""Choice-level scoring for training, the way accuracy reads a multiple-choice item: every option of an item
is a row (its context, then its answer tokens), scored by the mean log-likelihood of its answer tokens, and
the item's options compete in a softmax. Shared by the generator's choice loss
(`generator/function_space.py`) and the label-free test-time objectives of the adaptation families
(`adaptation/ttt.py`: self-training on pseudo-labels, InfoMax). The logits are read at the answer positions
only (`answer_logits`), as the evaluation's scorer reads them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import AnswerFormat
from .data import MultipleChoiceItem
from .evaluation.loglikelihood import logits_at
from .models import LoadedModel
from .sft import Example, collate, training_example


@dataclass(frozen=True)
class ChoiceExample:
    """Every option of one labelled item, each as (input ids, labels) after its own context, and the gold
    option's index."""

    options: tuple[Example, ...]
    gold: int


def choice_example(lm: LoadedModel, item: MultipleChoiceItem, max_tokens: int, keep: int = 0, seed: int = 0,
                   answer_format: AnswerFormat = "loglikelihood") -> ChoiceExample:
    """The item's options as rows (`sft.training_example`'s, in `answer_format`); with 0 < `keep` < its options,
    only the gold one and `keep - 1` others, drawn by a draw seeded with `seed` and the item's id (the same rows
    in every run and process)."""
    chosen = list(range(len(item.choices)))
    if 0 < keep < len(chosen):
        others = random.Random(f"{seed}:{item.id}").sample([i for i in chosen if i != item.gold], keep - 1)
        chosen = sorted([item.gold, *others])
    return ChoiceExample(tuple(training_example(lm, item, max_tokens, i, answer_format) for i in chosen),
                         chosen.index(item.gold))


def choice_batch(lm: LoadedModel, examples: Sequence[ChoiceExample], size: int, rng: torch.Generator
                 ) -> dict[str, torch.Tensor]:
    """`size` items drawn with replacement, collated by `collate_choices`."""
    picks = torch.randint(len(examples), (size,), generator=rng).tolist()
    return collate_choices(lm, [examples[i] for i in picks])


def collate_choices(lm: LoadedModel, examples: Sequence[ChoiceExample]) -> dict[str, torch.Tensor]:
    """One row per option of each item: the collated rows, `option_item` (each row's item) and `gold_row`
    (each item's gold row), on the model's device."""
    rows: list[Example] = []
    owner, gold = [], []
    for n, example in enumerate(examples):
        gold.append(len(rows) + example.gold)
        rows.extend(example.options)
        owner.extend([n] * len(example.options))
    batch = collate(rows, lm.tokenizer.pad_token_id)
    batch["option_item"], batch["gold_row"] = torch.tensor(owner), torch.tensor(gold)
    return {k: v.to(lm.device) for k, v in batch.items()}


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """(rows, length): the positions whose logits predict an answer token (the next label is not -100)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def answer_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(answer tokens, vocabulary): the logits at `answer_positions`, row-major, with the LM head run nowhere
    else. A row per option makes a full logits tensor large: 8 items of 10 options at 256 tokens hold 10^9
    logits, 2 GB in bf16, of which a few hundred rows are read."""
    return logits_at(model, answer_positions(batch["labels"]), input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"])


def option_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(rows,): each row's mean log-likelihood of its answer tokens (labels other than -100), in float32, from
    the logits at its `answer_positions` (`answer_logits`; or `full[answer_positions(labels)]`)."""
    answer = labels[:, 1:] != -100
    log_probs = F.log_softmax(logits.float(), dim=-1)
    token_ll = log_probs.gather(1, labels[:, 1:][answer][:, None])[:, 0]
    row_of_token = answer.nonzero()[:, 0]
    per_row = torch.zeros(len(labels), device=logits.device).index_add(0, row_of_token, token_ll)
    return per_row / answer.sum(1).clamp(min=1)


def option_log_probs(per_row: torch.Tensor, option_item: torch.Tensor) -> torch.Tensor:
    """(items, most options): each item's log-softmax over its options' scores; -inf where an item has fewer
    options than the most."""
    items = int(option_item.max()) + 1
    first = torch.full((items,), len(per_row), device=per_row.device).scatter_reduce(
        0, option_item, torch.arange(len(per_row), device=per_row.device), "amin")
    position = torch.arange(len(per_row), device=per_row.device) - first[option_item]
    width = int(position.max()) + 1
    scores = torch.full((items, width), float("-inf"), device=per_row.device)
    scores = scores.index_put((option_item, position), per_row)
    return torch.log_softmax(scores, dim=-1)


def option_distribution(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(items, most options): each item's log-probabilities over its options under `model` (`option_log_probs`
    of the rows' `option_scores`), for a batch of `collate_choices`."""
    return option_log_probs(option_scores(answer_logits(model, batch), batch["labels"]), batch["option_item"])


def choice_loss(logits: torch.Tensor, labels: torch.Tensor, option_item: torch.Tensor, gold_row: torch.Tensor
                ) -> torch.Tensor:
    """Mean over items of the cross-entropy of the gold option against the item's options, each option
    scored by the mean log-likelihood of its answer tokens (labels other than -100); `logits` as
    `option_scores` takes them."""
    per_row = option_scores(logits, labels)
    items = int(option_item.max()) + 1
    top = torch.full((items,), float("-inf"), device=logits.device).scatter_reduce(
        0, option_item, per_row.detach(), "amax")
    normalizer = torch.zeros(items, device=logits.device).index_add(0, option_item, (per_row - top[option_item]).exp())
    return (normalizer.log() + top - per_row[gold_row]).mean()


def infomax_loss(log_probs: torch.Tensor) -> torch.Tensor:
    """Mean per-item entropy of the option distribution minus the entropy of its average over the items
    (InfoMax): confident answers that do not all fall on one option position. `log_probs` as
    `option_log_probs` gives them."""
    probs = log_probs.exp()
    terms = probs * log_probs.masked_fill(torch.isinf(log_probs), 0.0)  # an absent option adds 0, not NaN
    marginal = probs.mean(0)
    marginal_entropy = -(marginal * marginal.clamp(min=1e-12).log()).sum()
    return -terms.sum(1).mean() - marginal_entropy
