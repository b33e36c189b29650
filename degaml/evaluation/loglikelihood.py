"""Log-likelihood scoring of multiple-choice items, as lm-evaluation-harness defines it, but faster.

Tokenization follows the harness exactly: trailing spaces of the context move to the continuation, the
pair is encoded whole and the continuation is what follows the encoded context; an empty context is
replaced by the prefix token (BOS, else EOS). The difference is the compute: the harness runs one
forward pass per (context, continuation) request; here the tokens an item's requests share are run
once, their key/value cache is copied to every choice, and only the continuations are run, batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
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
class _Request:
    tokens: tuple[int, ...]
    """Context then continuation, truncated on the left to the model's window + 1."""
    context_length: int
    """Number of context tokens in `tokens`; the rest is the continuation."""


def encode_request(lm: LoadedModel, context: str, continuation: str, max_length: int) -> _Request:
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
    tokens = (context_ids + continuation_ids)[-(max_length + 1):]
    return _Request(tuple(tokens), len(tokens) - len(continuation_ids))


def _shared_prefix_length(requests: Sequence[_Request]) -> int:
    """Tokens run once for all of an item's requests. The last context token of each request stays in its
    own suffix, because its output predicts the first continuation token."""
    limit = min(r.context_length for r in requests) - 1
    first = requests[0].tokens
    n = 0
    while n < limit and all(r.tokens[n] == first[n] for r in requests):
        n += 1
    return n


def _model_window(lm: LoadedModel) -> int:
    config = lm.model.config
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048))


class LoglikelihoodScorer:
    def __init__(self, lm: LoadedModel, batch_size: int = 16, max_length: int | None = None) -> None:
        self.lm = lm
        self.batch_size = batch_size
        self.max_length = max_length or _model_window(lm)

    def score(self, items: Sequence[MultipleChoiceItem], progress: bool = True, desc: str = "scoring"
              ) -> list[list[ChoiceScore]]:
        """Per item, per choice: log-probability of the continuation given the context."""
        encoded = [
            [encode_request(self.lm, ctx, cont, self.max_length) for ctx, cont in zip(it.contexts, it.continuations)]
            for it in items
        ]
        prefixes = [_shared_prefix_length(reqs) for reqs in encoded]
        results: list[list[ChoiceScore] | None] = [None] * len(items)
        # Longest items first, grouped so that one batch holds about `batch_size` continuations; items with
        # and without a shared prefix go to different batches (a fully padded prefix row is never run).
        order = sorted(range(len(items)), key=lambda i: (prefixes[i] > 0, -len(encoded[i][0].tokens)))
        batches: list[list[int]] = []
        for i in order:
            current = batches[-1] if batches else None
            if (current is None or (prefixes[current[0]] > 0) != (prefixes[i] > 0)
                    or sum(len(encoded[j]) for j in current) + len(encoded[i]) > self.batch_size):
                batches.append([i])
            else:
                current.append(i)
        with torch.inference_mode(), tqdm(total=len(items), desc=desc, disable=not progress, leave=False) as bar:
            for batch in batches:
                for i, scores in zip(batch, self._score_batch([encoded[i] for i in batch], [prefixes[i] for i in batch])):
                    results[i] = scores
                bar.update(len(batch))
        return results  # type: ignore[return-value]

    def _score_batch(self, batch: list[list[_Request]], prefixes: list[int]) -> list[list[ChoiceScore]]:
        device = self.lm.device
        pad = self.lm.tokenizer.pad_token_id
        longest_prefix = max(prefixes)
        cache = None
        prefix_mask = torch.zeros(len(batch), longest_prefix, dtype=torch.long, device=device)
        if longest_prefix:
            # Left-pad the prefixes so that every item's suffix starts right after its own prefix.
            ids = torch.full((len(batch), longest_prefix), pad, dtype=torch.long, device=device)
            for k, (reqs, p) in enumerate(zip(batch, prefixes)):
                ids[k, longest_prefix - p:] = torch.tensor(reqs[0].tokens[:p], device=device)
                prefix_mask[k, longest_prefix - p:] = 1
            positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
            cache = self.lm.model(input_ids=ids, attention_mask=prefix_mask, position_ids=positions,
                                  use_cache=True).past_key_values
        rows = [(k, r) for k, reqs in enumerate(batch) for r in reqs]
        owner = torch.tensor([k for k, _ in rows], device=device)
        # The model's input is every token but the last; the harness does the same.
        suffixes = [r.tokens[prefixes[k]:-1] for k, r in rows]
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
        suffix_mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        for row, s in enumerate(suffixes):
            ids[row, :len(s)] = torch.tensor(s, device=device)
            suffix_mask[row, :len(s)] = 1
        start = torch.tensor([prefixes[k] for k, _ in rows], device=device)
        positions = start[:, None] + torch.arange(width, device=device)[None, :]
        if cache is not None:
            cache.reorder_cache(owner)  # one copy of the item's prefix cache per choice
        mask = torch.cat([prefix_mask[owner], suffix_mask], dim=1)
        logits = self.lm.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                               past_key_values=cache, use_cache=cache is not None).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        scores: list[list[ChoiceScore]] = [[] for _ in batch]
        for row, (k, r) in enumerate(rows):
            first = r.context_length - 1 - prefixes[k]  # suffix position whose output predicts the first target
            targets = torch.tensor(r.tokens[r.context_length:], device=device)
            window = logprobs[row, first:first + len(targets)]
            scores[k].append(ChoiceScore(
                logprob=window.gather(-1, targets[:, None]).sum().item(),
                is_greedy=bool((window.argmax(-1) == targets).all()),
                num_tokens=len(targets),
            ))
        return scores
