"""Log-likelihood scoring of multiple-choice items, as lm-evaluation-harness defines it, but faster.

Tokenization follows the harness exactly: trailing spaces of the context move to the continuation, the
pair is encoded whole and the continuation is what follows the encoded context; an empty context is
replaced by the prefix token (BOS, else EOS). The difference is the compute: the harness runs every
(context, continuation) request as its own sequence. Here an item becomes one packed row: the tokens
its requests share, once, then each request's remaining tokens. A tree-shaped attention mask lets each
segment see the shared prefix and itself only, and positions restart after the prefix, so every
segment computes exactly what its own sequence would, with the prefix run once and little padding.
The LM head and the log-softmax run only at the positions whose outputs predict continuation tokens
(`logits_to_keep`), since most positions of a row are context (benchmarks/kept_logits.py measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import transformers.modeling_utils
from tqdm.auto import tqdm

from ..data import MultipleChoiceItem
from ..models import LoadedModel


@dataclass(frozen=True)
class ChoiceScore:
    logprob: float
    """Sum of the continuation's token log-probabilities."""
    is_greedy: bool
    """Every continuation token is the argmax of its position."""
    num_tokens: int


@dataclass(frozen=True)
class EncodedRequest:
    tokens: tuple[int, ...]
    """Context then continuation, truncated on the left to the model's window + 1."""
    context_length: int
    """Number of context tokens in `tokens`; the rest is the continuation."""


def encode_request(lm: LoadedModel, context: str, continuation: str, max_length: int) -> EncodedRequest:
    if context == "":
        context_ids, continuation_ids = [lm.prefix_token_id], lm.encode(continuation)
    else:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = lm.encode(context + continuation)
        context_ids = lm.encode(context)
        continuation_ids = whole[len(context_ids):]
    if not continuation_ids:
        raise ValueError(f"continuation {continuation!r} encodes to no tokens after context {context[-40:]!r}")
    # A continuation longer than the window keeps its first tokens after one context token (left-truncating
    # it would leave no context and a negative context length).
    continuation_ids = continuation_ids[:max_length]
    tokens = (context_ids + continuation_ids)[-(max_length + 1):]
    return EncodedRequest(tuple(tokens), len(tokens) - len(continuation_ids))


def within_budget(requests: Sequence[EncodedRequest], max_length: int) -> list[EncodedRequest]:
    """An item's requests cut to `max_length` tokens (+ 1, as the window), the same number of context tokens
    dropped from the left of each, so that options sharing a context still share what is kept of it (the packed
    row runs it once; a cut per request would make every option's context its own). At least one context token
    stays: a continuation longer than the budget keeps it."""
    drop = max(0, max(len(r.tokens) for r in requests) - (max_length + 1))
    return [EncodedRequest(r.tokens[min(drop, r.context_length - 1):], r.context_length - min(drop, r.context_length - 1))
            for r in requests]


def _shared_prefix_length(requests: Sequence[EncodedRequest]) -> int:
    """Tokens run once for all of an item's requests. The last context token of each request stays in its
    own segment, because its output predicts the first continuation token."""
    limit = min(r.context_length for r in requests) - 1
    first = requests[0].tokens
    n = 0
    while n < limit and all(r.tokens[n] == first[n] for r in requests):
        n += 1
    return n


@dataclass(frozen=True)
class _PackedItem:
    """An item's requests as one row: shared prefix (segment 0), then request j's rest (segment j + 1)."""

    requests: tuple[EncodedRequest, ...]
    tokens: tuple[int, ...]
    positions: tuple[int, ...]
    segments: tuple[int, ...]
    first_target_positions: tuple[int, ...]
    """Row position whose output predicts request j's first continuation token."""


def _pack(requests: Sequence[EncodedRequest]) -> _PackedItem:
    p = _shared_prefix_length(requests)
    tokens, positions, segments = list(requests[0].tokens[:p]), list(range(p)), [0] * p
    first_targets = []
    for j, r in enumerate(requests):
        rest = r.tokens[p:-1]  # the model's input is every token but the last, as in the harness
        first_targets.append(len(tokens) + r.context_length - 1 - p)
        tokens += rest
        positions += range(p, p + len(rest))
        segments += [j + 1] * len(rest)
    return _PackedItem(tuple(requests), tuple(tokens), tuple(positions), tuple(segments), tuple(first_targets))


def tree_mask(segments: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """(rows, width, width) bool attention of packed rows: causal, and a segment other than 0 (the shared prefix)
    sees the prefix and itself only. Padding queries attend to themselves: a row that sees nothing gives NaN."""
    mask = torch.eye(width, dtype=torch.bool).repeat(len(segments), 1, 1)
    for k, row in enumerate(segments):
        n, segment = len(row), torch.tensor(row)
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
        mask[k, :n, :n] = causal & ((segment[None, :] == 0) | (segment[None, :] == segment[:, None]))
    return mask


def _keeps_per_row() -> bool:
    """Whether `logits_to_keep` takes a (batch, length) boolean mask (newer transformers 5 releases), asked of
    the slicing helper itself; older releases take only positions shared by every row."""
    slicer = getattr(transformers.modeling_utils, "slice_logits_to_keep", None)
    if slicer is None:
        return False
    try:
        return tuple(slicer(torch.zeros(1, 2, 1), torch.tensor([[True, False]])).shape) == (1, 1)
    except (IndexError, RuntimeError, TypeError):
        return False


KEEPS_PER_ROW = _keeps_per_row()
"""Where it does not, the union of the rows' positions is kept and the rows' own picked out afterwards."""


def logits_at(model: torch.nn.Module, keep: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
    """The logits at the True positions of `keep` (batch, length), as (number kept, vocabulary) in row-major
    order, without running the LM head anywhere else."""
    if KEEPS_PER_ROW:
        return model(**inputs, logits_to_keep=keep).logits
    union = keep.any(0).nonzero().squeeze(1)
    return model(**inputs, logits_to_keep=union).logits[keep[:, union]]


def _model_window(lm: LoadedModel) -> int:
    config = lm.model.config
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048))


class LoglikelihoodScorer:
    def __init__(self, lm: LoadedModel, batch_size: int = 16, max_length: int | None = None) -> None:
        """`max_length`: a per-item context budget (`within_budget`); None scores within the model's window."""
        self.lm = lm
        self.batch_size = batch_size
        self.window = _model_window(lm)
        self.max_length = max_length

    def _requests(self, item: MultipleChoiceItem) -> list[EncodedRequest]:
        requests = [encode_request(self.lm, ctx, cont, self.window) for ctx, cont in zip(item.contexts, item.continuations)]
        return within_budget(requests, self.max_length) if self.max_length is not None else requests

    def score(self, items: Sequence[MultipleChoiceItem], progress: bool = True, desc: str = "scoring"
              ) -> list[list[ChoiceScore]]:
        """Per item, per choice: log-probability of the continuation given the context."""
        packed = [_pack(self._requests(it)) for it in items]
        results: list[list[ChoiceScore] | None] = [None] * len(items)
        # Longest rows first; a batch holds about `batch_size` continuations.
        order = sorted(range(len(items)), key=lambda i: -len(packed[i].tokens))
        batches: list[list[int]] = []
        for i in order:
            if not batches or sum(len(packed[j].requests) for j in batches[-1]) + len(packed[i].requests) > self.batch_size:
                batches.append([i])
            else:
                batches[-1].append(i)
        with torch.inference_mode(), tqdm(total=len(items), desc=desc, disable=not progress, leave=False) as bar:
            for batch in batches:
                for i, scores in zip(batch, self._score_batch([packed[i] for i in batch])):
                    results[i] = scores
                bar.update(len(batch))
        return results  # type: ignore[return-value]

    def _score_batch(self, batch: list[_PackedItem]) -> list[list[ChoiceScore]]:
        device = self.lm.device
        width = max(len(p.tokens) for p in batch)
        ids = torch.full((len(batch), width), self.lm.tokenizer.pad_token_id, dtype=torch.long)
        positions = torch.zeros(len(batch), width, dtype=torch.long)
        mask = tree_mask([p.segments for p in batch], width)
        keep = torch.zeros(len(batch), width, dtype=torch.bool)  # outputs that predict continuation tokens
        for k, p in enumerate(batch):
            n = len(p.tokens)
            ids[k, :n] = torch.tensor(p.tokens)
            positions[k, :n] = torch.tensor(p.positions)
            for r, first in zip(p.requests, p.first_target_positions):
                keep[k, first:first + len(r.tokens) - r.context_length] = True
        row_of = keep.flatten().cumsum(0).view_as(keep) - 1  # position -> row of the kept logits
        logits = logits_at(self.lm.model, keep.to(device), input_ids=ids.to(device),
                            attention_mask=mask[:, None].to(device), position_ids=positions.to(device))
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        scores: list[list[ChoiceScore]] = []
        for k, p in enumerate(batch):
            item_scores = []
            for r, first in zip(p.requests, p.first_target_positions):
                targets = torch.tensor(r.tokens[r.context_length:], device=device)
                window = logprobs[row_of[k, first:first + len(targets)].to(device)]
                item_scores.append(ChoiceScore(
                    logprob=window.gather(-1, targets[:, None]).sum().item(),
                    is_greedy=bool((window.argmax(-1) == targets).all()),
                    num_tokens=len(targets),
                ))
            scores.append(item_scores)
        return scores
