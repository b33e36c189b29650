import math

import pytest
import torch

from degaml.data import MultipleChoiceItem
from degaml.evaluation import LoglikelihoodScorer, loglikelihood, predict_acc, predict_acc_norm
from degaml.evaluation.loglikelihood import encode_request


def hand_loglikelihood(lm, context: str, continuation: str) -> float:
    """One unbatched, uncached forward over context + continuation, summed by hand."""
    ctx = lm.tokenizer(context).input_ids
    whole = lm.tokenizer(context + continuation).input_ids
    cont = whole[len(ctx):]
    with torch.no_grad():
        logits = lm.model(torch.tensor([whole])).logits[0]
    logprobs = torch.log_softmax(logits.float(), -1)
    return sum(logprobs[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))


ITEMS = [
    MultipleChoiceItem.cloze("arc", "Which gas do plants absorb?", "Question: Which gas do plants absorb?\nAnswer:",
                             ["carbon dioxide", "oxygen", "the quick brown fox"], 0),
    MultipleChoiceItem.cloze("short", "x", "4 * 8 =", ["32", "59", "12"], 0),
    MultipleChoiceItem(id="wino", question="Sarah ... _ always", choices=("Sarah", "Maria"), gold=1,
                       contexts=("Sarah was better than Maria so Sarah", "Sarah was better than Maria so Maria"),
                       continuations=(" always got the easier cases.",) * 2),
    MultipleChoiceItem.cloze("one-token-context", "A", "A", ["man is sitting", "dog"], 1),
]


@pytest.mark.parametrize("per_row", [True, False], ids=["kept-per-row", "kept-union"])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_scores_match_hand_computed_loglikelihoods(tiny_lm, batch_size, per_row, monkeypatch):
    """Whichever way `logits_to_keep` selects the scored positions (this transformers' per-row mask, or the
    union of the rows' positions that older releases take), every continuation scores as it does alone."""
    monkeypatch.setattr(loglikelihood, "KEEPS_PER_ROW", per_row)
    scores = LoglikelihoodScorer(tiny_lm, batch_size=batch_size).score(ITEMS, progress=False)
    for item, item_scores in zip(ITEMS, scores):
        assert len(item_scores) == len(item.choices)
        for ctx, cont, score in zip(item.contexts, item.continuations, item_scores):
            assert score.logprob == pytest.approx(hand_loglikelihood(tiny_lm, ctx, cont), abs=1e-4)
            assert score.logprob < 0


def test_shared_prefix_does_not_change_scores_when_batched_with_others(tiny_lm):
    alone = LoglikelihoodScorer(tiny_lm, batch_size=64).score(ITEMS[:1], progress=False)[0]
    together = LoglikelihoodScorer(tiny_lm, batch_size=64).score(ITEMS, progress=False)[0]
    assert [s.logprob for s in alone] == pytest.approx([s.logprob for s in together], abs=1e-5)


def test_is_greedy_matches_hand_computed_argmax(tiny_lm):
    scores = LoglikelihoodScorer(tiny_lm).score(ITEMS, progress=False)
    for item, item_scores in zip(ITEMS, scores):
        for ctx, cont, score in zip(item.contexts, item.continuations, item_scores):
            request = encode_request(tiny_lm, ctx, cont, 256)
            with torch.no_grad():
                logits = tiny_lm.model(torch.tensor([request.tokens])).logits[0]
            predicted = logits[request.context_length - 1:-1].argmax(-1).tolist()
            assert score.is_greedy == (predicted == list(request.tokens[request.context_length:]))


def test_trailing_context_space_moves_to_continuation(tokenizer):
    from tests.conftest import make_tiny

    lm = make_tiny("llama", tokenizer)
    with_space = encode_request(lm, "Answer: ", "carbon", 256)
    without = encode_request(lm, "Answer:", " carbon", 256)
    assert with_space == without


def test_empty_context_uses_prefix_token(tokenizer):
    from tests.conftest import make_tiny

    lm = make_tiny("llama", tokenizer)
    request = encode_request(lm, "", "carbon dioxide", 256)
    assert request.tokens[0] == tokenizer.eos_token_id and request.context_length == 1


def test_acc_and_acc_norm_differ_on_hand_computed_case():
    choices = ["abcdefghij", "ab"]  # lengths 10 and 2
    logprobs = [-5.0, -2.0]  # acc picks 1 (-2 > -5); per char: -0.5 vs -1.0 -> acc_norm picks 0
    assert predict_acc(logprobs) == 1
    assert predict_acc_norm(logprobs, choices) == 0
    assert math.isclose(logprobs[0] / len(choices[0]), -0.5)


def test_ties_break_to_first_index_like_numpy():
    assert predict_acc([-1.0, -1.0, -2.0]) == 0


def test_continuation_longer_than_the_window_keeps_one_context_token_and_its_first_tokens(tokenizer):
    from degaml.data import MultipleChoiceItem
    from degaml.sft import collate, training_example
    from tests.conftest import make_tiny

    lm = make_tiny("llama", tokenizer)
    long_answer = " " + " ".join(["red blue green"] * 40)
    request = encode_request(lm, "Colors:", long_answer, 15)
    continuation = lm.encode("Colors:" + long_answer)[len(lm.encode("Colors:")):]
    assert len(request.tokens) == 16 and request.context_length == 1
    assert list(request.tokens[1:]) == continuation[:15]
    # The supervised example built from it has one label per token (a PIQA-length answer once broke this).
    tokens, labels = training_example(lm, MultipleChoiceItem.cloze("x", "q", "Colors:", [long_answer, " no"], 0), 16)
    assert len(tokens) == len(labels) == 16 and labels[0] == -100
    collate([(tokens, labels)], pad=0)


def test_a_context_budget_cuts_every_option_alike_so_they_still_share_the_context():
    from degaml.evaluation.loglikelihood import EncodedRequest, _shared_prefix_length, within_budget

    context = tuple(range(1, 11))
    requests = [EncodedRequest(context + (20, 21), 10), EncodedRequest(context + (30, 31, 32), 10)]
    cut = within_budget(requests, 6)  # the longest, 13 tokens, must fit 6 + 1: 6 context tokens go from each
    assert cut == [EncodedRequest((7, 8, 9, 10, 20, 21), 4), EncodedRequest((7, 8, 9, 10, 30, 31, 32), 4)]
    assert _shared_prefix_length(cut) == 3  # the kept context, less its last token, is run once
    assert within_budget(requests, 20) == requests
    long = [EncodedRequest((1, 2) + tuple(range(40, 50)), 2)]  # a continuation longer than the budget
    assert within_budget(long, 4) == [EncodedRequest((2,) + tuple(range(40, 50)), 1)]
