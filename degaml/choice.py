"""Choice-level scoring for training, the way accuracy reads a multiple-choice item: every option of an item
is scored by the mean log-likelihood of its answer tokens after its context, and the item's options compete in
a softmax. Shared by the generator's choice loss (`generator/function_space.py`) and the label-free objectives
of the adaptation families (`adaptation/`: self-training on pseudo-labels, InfoMax, the supervised choice).

An item's options are packed into one row, as the evaluation's scorer packs them
(`evaluation/loglikelihood.py`): the tokens its options share once, then each option's rest, under a
tree-shaped attention mask with positions restarting after the shared part, so each option computes what its
own sequence would. An item of 10 options with a 256-token context runs about 10 times fewer tokens than a row
per option. The logits are read at the answer positions only (`answer_logits`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import AnswerFormat
from .data import MultipleChoiceItem
from .evaluation.loglikelihood import logits_at, tree_mask
from .models import LoadedModel
from .sft import Example, training_example


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


@dataclass(frozen=True)
class PackedChoices:
    """One item's options as one row: the shared prefix (segment 0), then option j's rest (segment j + 1)."""

    tokens: list[int]
    positions: list[int]
    segments: list[int]
    target: list[int]
    """The token each position's output predicts within its own option's sequence; -100 where none is known
    (the prefix's last position when the options' next tokens differ)."""
    answer: list[bool]
    """Whether `target` is an answer token (a label other than -100)."""


def pack_options(example: ChoiceExample) -> PackedChoices:
    """`example`'s rows packed into one. The prefix stops before each row's last context token, whose output
    predicts the first answer token; each row's last token is dropped, since its output predicts nothing."""
    rows = example.options
    limit = min(next((i for i, label in enumerate(labels) if label != -100), len(labels)) for _, labels in rows) - 1
    first = rows[0][0]
    p = 0
    while p < limit and all(tokens[p] == first[p] for tokens, _ in rows):
        p += 1
    tokens, positions, segments = list(first[:p]), list(range(p)), [0] * p
    after_prefix = {tokens_[p] for tokens_, _ in rows if len(tokens_) > p}
    target = first[1:p] + ([after_prefix.pop()] if len(after_prefix) == 1 and p else [-100] * min(p, 1))
    answer = [False] * p
    for j, (row, labels) in enumerate(rows):
        rest = range(p, len(row) - 1)
        tokens += [row[i] for i in rest]
        positions += rest
        segments += [j + 1] * len(rest)
        target += [row[i + 1] for i in rest]
        answer += [labels[i + 1] != -100 for i in rest]
    return PackedChoices(tokens, positions, segments, target, answer)


def collate_choices(lm: LoadedModel, examples: Sequence[ChoiceExample]) -> dict[str, torch.Tensor]:
    """One packed row per item (`pack_options`), on the model's device: `input_ids`, `position_ids`, the tree
    `attention_mask` (rows, 1, length, length; `evaluation.loglikelihood.tree_mask`), `target` and `answer`
    (rows, length), `answer_option` (each answer position's option, in row-major order), `option_item` (each option's item) and `gold_option` (each item's gold option)."""
    packed = [pack_options(e) for e in examples]
    width = max(len(p.tokens) for p in packed)
    ids = torch.full((len(packed), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    positions = torch.zeros(len(packed), width, dtype=torch.long)
    target = torch.full((len(packed), width), -100, dtype=torch.long)
    answer = torch.zeros(len(packed), width, dtype=torch.bool)
    mask = tree_mask([p.segments for p in packed], width)
    owner, gold, answer_option = [], [], []
    for k, (p, example) in enumerate(zip(packed, examples)):
        n = len(p.tokens)
        ids[k, :n], positions[k, :n], target[k, :n] = torch.tensor(p.tokens), torch.tensor(p.positions), torch.tensor(p.target)
        answer[k, :n] = torch.tensor(p.answer)
        gold.append(len(owner) + example.gold)
        answer_option += [len(owner) + s - 1 for s, a in zip(p.segments, p.answer) if a]
        owner += [k] * len(example.options)
    batch = {"input_ids": ids, "position_ids": positions, "attention_mask": mask[:, None], "target": target,
             "answer": answer, "answer_option": torch.tensor(answer_option), "option_item": torch.tensor(owner),
             "gold_option": torch.tensor(gold)}
    return {k: v.to(lm.device) for k, v in batch.items()}


MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")
"""The keys of a `collate_choices` batch that the model reads."""


def answer_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(answer tokens, vocabulary): the logits at the batch's `answer` positions, row-major, with the LM head
    run nowhere else (most positions are context)."""
    return logits_at(model, batch["answer"], **{k: batch[k] for k in MODEL_INPUTS})


def option_scores(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(options,): each option's mean log-likelihood of its answer tokens, in float32, from the logits at the
    batch's `answer` positions (`answer_logits`, or a full logits tensor indexed by `batch["answer"]`)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    token_ll = log_probs.gather(1, batch["target"][batch["answer"]][:, None])[:, 0]
    options = len(batch["option_item"])
    total = torch.zeros(options, device=logits.device).index_add(0, batch["answer_option"], token_ll)
    count = torch.zeros(options, device=logits.device).index_add(0, batch["answer_option"], torch.ones_like(token_ll))
    return total / count.clamp(min=1)


def option_log_probs(per_option: torch.Tensor, option_item: torch.Tensor) -> torch.Tensor:
    """(items, most options): each item's log-softmax over its options' scores; -inf where an item has fewer
    options than the most."""
    items = int(option_item.max()) + 1
    first = torch.full((items,), len(per_option), device=per_option.device).scatter_reduce(
        0, option_item, torch.arange(len(per_option), device=per_option.device), "amin")
    position = torch.arange(len(per_option), device=per_option.device) - first[option_item]
    width = int(position.max()) + 1
    scores = torch.full((items, width), float("-inf"), device=per_option.device)
    scores = scores.index_put((option_item, position), per_option)
    return torch.log_softmax(scores, dim=-1)


def option_distribution(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(items, most options): each item's log-probabilities over its options under `model` (`option_log_probs`
    of the `option_scores`), for a batch of `collate_choices`."""
    return option_log_probs(option_scores(answer_logits(model, batch), batch), batch["option_item"])


def choice_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over items of the cross-entropy of the gold option against the item's options, each option scored
    by the mean log-likelihood of its answer tokens; `logits` as `option_scores` takes them."""
    per_option = option_scores(logits, batch)
    option_item = batch["option_item"]
    items = int(option_item.max()) + 1
    top = torch.full((items,), float("-inf"), device=logits.device).scatter_reduce(
        0, option_item, per_option.detach(), "amax")
    normalizer = torch.zeros(items, device=logits.device).index_add(0, option_item, (per_option - top[option_item]).exp())
    return (normalizer.log() + top - per_option[batch["gold_option"]]).mean()


def infomax_loss(log_probs: torch.Tensor) -> torch.Tensor:
    """Mean per-item entropy of the option distribution minus the entropy of its average over the items
    (InfoMax): confident answers that do not all fall on one option position. `log_probs` as
    `option_log_probs` gives them."""
    probs = log_probs.exp()
    terms = probs * log_probs.masked_fill(torch.isinf(log_probs), 0.0)  # an absent option adds 0, not NaN
    marginal = probs.mean(0)
    marginal_entropy = -(marginal * marginal.clamp(min=1e-12).log()).sum()
    return -terms.sum(1).mean() - marginal_entropy
