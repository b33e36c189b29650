"""The generator's function-space loss (`generator.function_space`): the answer and choice losses of a
generated adapter and the anchor, the KL from the base model at the examples' context positions."""

import math

import pytest
import torch

from degaml.choice import (
    MODEL_INPUTS,
    answer_logits,
    choice_batch,
    choice_example,
    choice_loss,
    collate_choices,
    infomax_loss,
    option_log_probs,
    option_scores,
    pack_options,
)
from degaml.config import LoraSettings
from degaml.data import MultipleChoiceItem
from degaml.generator.function_space import AdapterLoss, anchor_kl, context_positions
from degaml.models import lora_state, peft_model
from degaml.sft import collate, training_example
from tests.conftest import QUESTIONS, make_tiny

LORA = LoraSettings(r=2, alpha=4)


def test_context_positions_are_those_predicting_unpadded_context_tokens(tokenizer):
    # Row 0: three context tokens, then two answer tokens. Row 1: two context, one answer, two of padding.
    labels = torch.tensor([[-100, -100, -100, 7, 8], [-100, -100, 5, -100, -100]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    # Position t predicts token t + 1: row 0 predicts context at t = 0, 1; row 1 at t = 0 only (t = 1
    # predicts the answer, t = 2 and 3 predict padding); the last position predicts nothing.
    expected = torch.tensor([[True, True, False, False, False], [True, False, False, False, False]])
    assert torch.equal(context_positions({"labels": labels, "attention_mask": mask}), expected)
    # A packed choice batch says per position what its output predicts.
    lm = make_tiny("llama", tokenizer)
    item = MultipleChoiceItem.cloze("q", "Pick", "Question: Pick one\nAnswer:", ("a", "bb bb"), 1)
    batch = collate_choices(lm, [choice_example(lm, item, 64)])
    packed = pack_options(choice_example(lm, item, 64))
    assert torch.equal(context_positions(batch)[0], torch.tensor([t != -100 and not a for t, a in zip(packed.target, packed.answer)]))


def test_anchor_kl_matches_the_hand_computed_divergence():
    base = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])  # (1, T=3, V=2)
    adapted = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]]])
    positions = torch.tensor([[True, True, False]])  # the last position is not read
    p = torch.tensor([math.e / (math.e + 1), 1 / (math.e + 1)])  # base at t = 1; t = 0 agrees exactly
    kl_t1 = float((p * (p.log() - math.log(0.5))).sum())
    assert float(anchor_kl(adapted, base, positions)) == pytest.approx(kl_t1 / 2, rel=1e-5)
    assert float(anchor_kl(base, base, positions)) == pytest.approx(0.0, abs=1e-7)
    assert float(anchor_kl(adapted, base, torch.tensor([[False, False, False]]))) == 0.0


def _batch(lm):
    items = [MultipleChoiceItem.cloze(f"c{i}", q, f"Question: {q}\nAnswer:", c, g)
             for i, (q, c, g) in enumerate(QUESTIONS["colors"][:4])]
    return collate([training_example(lm, it, 64) for it in items], lm.tokenizer.pad_token_id)


def test_the_anchor_is_zero_at_the_base_model_and_trains_the_adapter_back_toward_it(tokenizer):
    lm = make_tiny("llama", tokenizer)
    batch = _batch(lm)
    with peft_model(lm, LORA) as model:
        zero_b = lora_state(model)  # PEFT's init: B = 0, the base model exactly
    torch.manual_seed(1)
    moved = {k: v + 0.5 * torch.randn_like(v) for k, v in zero_b.items()}
    with torch.no_grad():
        plain_loss = lm.model(**batch).loss
    loss = AdapterLoss(lm, LORA, anchor=0.5)
    try:
        at_base = loss.terms(zero_b, batch)
        assert float(at_base["anchor"]) == pytest.approx(0.0, abs=1e-6)
        assert float(at_base["task_loss"]) == pytest.approx(float(plain_loss), rel=1e-5)
        state = {k: v.clone().requires_grad_(True) for k, v in moved.items()}
        terms = loss.terms(state, batch)
        assert float(terms["anchor"]) > 1e-3
        total = loss(state, batch)
        assert float(total) == pytest.approx(float(terms["task_loss"] + 0.5 * terms["anchor"]), rel=1e-5)
        # The anchor's gradient alone points the adapter back toward the base model.
        terms["anchor"].backward()
        with torch.no_grad():
            stepped = {k: v - 0.05 * v.grad for k, v in state.items()}
        assert float(loss.terms(stepped, batch)["anchor"]) < float(terms["anchor"])
    finally:
        loss.close()
    unanchored = AdapterLoss(lm, LORA)
    try:
        assert set(unanchored.terms(moved, batch)) == {"task_loss"}
    finally:
        unanchored.close()
    assert not any("lora_" in name for name, _ in lm.model.named_parameters())  # the base model is left bare
    with pytest.raises(ValueError, match="anchor must be >= 0"):
        AdapterLoss(lm, LORA, anchor=-1.0)


def test_choice_loss_is_the_cross_entropy_over_each_items_options():
    torch.manual_seed(0)
    # Item 0 has options 0-1 (gold 1), item 1 options 2-4 (gold 2); 8 answer tokens in all, over 6 words.
    answer_option = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
    target = torch.tensor([[3, 4, 5, 1, 2, 2, 3, 0]])
    batch = {"target": target, "answer": torch.ones_like(target, dtype=torch.bool), "answer_option": answer_option,
             "option_item": torch.tensor([0, 0, 1, 1, 1]), "gold_option": torch.tensor([1, 2])}
    logits = torch.randn(8, 6)
    token_ll = torch.log_softmax(logits, -1)[torch.arange(8), target[0]].tolist()
    scores = [sum(v for v, o in zip(token_ll, answer_option.tolist()) if o == j) / answer_option.tolist().count(j)
              for j in range(5)]
    expected = 0.0
    for options, gold in (([0, 1], 1), ([2, 3, 4], 2)):
        expected += -scores[gold] + math.log(sum(math.exp(scores[r]) for r in options))
    assert float(choice_loss(logits, batch)) == pytest.approx(expected / 2, rel=1e-5)


def _alone(lm, row) -> float:
    """One option by hand, as its own unpadded sequence: the mean log-probability of its answer tokens."""
    tokens, labels = row
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([tokens])).logits[0]
    values = [torch.log_softmax(logits[t].float(), -1)[labels[t + 1]].item() for t in range(len(tokens) - 1)
              if labels[t + 1] != -100]
    return sum(values) / len(values)


PACKING_ITEMS = [
    MultipleChoiceItem.cloze("q1", "Pick", "Question: Pick one\nAnswer:", ("a", "bb bb", "c"), 1),
    MultipleChoiceItem.cloze("q2", "Which", "Question: Which?\nAnswer:", ("yes", "no no no"), 0),
    # Contexts that differ per option (WinoGrande's form): only their common start is shared.
    MultipleChoiceItem("q3", "Who", ("Anna", "Bob"), 0,
                       ("Anna gave Bob the book because Anna", "Anna gave Bob the book because Bob"),
                       (" was done.", " was done.")),
]


def test_packed_options_score_what_each_option_alone_scores(tokenizer):
    """One row per item, the shared prefix run once under the tree mask: every option's score is the one its
    own sequence gives, items of unequal length (padding) and contexts that differ included."""
    lm = make_tiny("llama", tokenizer)
    examples = [choice_example(lm, it, 64) for it in PACKING_ITEMS]
    batch = collate_choices(lm, examples)
    assert len(batch["input_ids"]) == 3 and batch["option_item"].tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert batch["gold_option"].tolist() == [1, 3, 5]
    assert len(pack_options(examples[0]).tokens) < sum(len(t) for t, _ in examples[0].options)  # the prefix once
    with torch.no_grad():
        scores = option_scores(answer_logits(lm.model, batch), batch)
    expected = [_alone(lm, row) for e in examples for row in e.options]
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("per_row", [True, False])
def test_answer_logits_are_the_full_logits_at_the_answer_positions(tokenizer, monkeypatch, per_row):
    """The LM head runs at the answer positions only, in either `logits_to_keep` form a transformers release
    takes, and gives the logits the full pass gives there (rows of unequal length: padding)."""
    from degaml.evaluation import loglikelihood

    monkeypatch.setattr(loglikelihood, "KEEPS_PER_ROW", per_row and loglikelihood.KEEPS_PER_ROW)
    lm = make_tiny("llama", tokenizer)
    batch = collate_choices(lm, [choice_example(lm, it, 64) for it in PACKING_ITEMS])
    with torch.no_grad():
        full = lm.model(**{k: batch[k] for k in MODEL_INPUTS}).logits
        kept = answer_logits(lm.model, batch)
    assert len(kept) == len(batch["answer_option"])  # one kept position per answer token
    torch.testing.assert_close(kept, full[batch["answer"]], rtol=1e-5, atol=1e-5)


def test_option_log_probs_and_infomax_match_hand_computed_values():
    per_row = torch.tensor([0.0, -1.0, -2.0, -0.5, -0.5])  # item 0: rows 0-1; item 1: rows 2-4
    lp = option_log_probs(per_row, torch.tensor([0, 0, 1, 1, 1]))
    assert lp.shape == (2, 3) and torch.isinf(lp[0, 2])
    first = [0.0 - math.log(1 + math.exp(-1.0)), -1.0 - math.log(1 + math.exp(-1.0))]
    assert lp[0, :2].tolist() == pytest.approx(first, rel=1e-5)
    z = math.log(math.exp(-2.0) + 2 * math.exp(-0.5))
    assert lp[1].tolist() == pytest.approx([-2.0 - z, -0.5 - z, -0.5 - z], rel=1e-5)
    probs = [[math.exp(v) for v in first] + [0.0], [math.exp(v) for v in lp[1].tolist()]]
    entropy = sum(-sum(p * math.log(p) for p in row if p > 0) for row in probs) / 2
    marginal = [(a + b) / 2 for a, b in zip(*probs)]
    expected = entropy + sum(m * math.log(m) for m in marginal)
    scores = per_row.clone().requires_grad_(True)
    loss = infomax_loss(option_log_probs(scores, torch.tensor([0, 0, 1, 1, 1])))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(scores.grad).all()  # the absent third option of item 0 adds no NaN


def test_a_choice_example_keeps_the_gold_option_and_a_seeded_sample_of_the_others(tokenizer):
    lm = make_tiny("llama", tokenizer)
    item = MultipleChoiceItem.cloze("q7", "Pick", "Question: Pick\nAnswer:", ("a", "b", "c", "d", "e"), 3)
    kept = choice_example(lm, item, 64, keep=3, seed=1)
    rows = [training_example(lm, item, 64, i) for i in range(5)]
    chosen = [rows.index(r) for r in kept.options]
    assert len(chosen) == 3 and 3 in chosen and chosen == sorted(chosen) and chosen[kept.gold] == 3
    assert choice_example(lm, item, 64, keep=3, seed=1) == kept  # the same rows every time
    assert len(choice_example(lm, item, 64, keep=0).options) == len(choice_example(lm, item, 64, keep=9).options) == 5
    draws = {tuple(rows.index(r) for r in choice_example(lm, item, 64, keep=2, seed=s).options) for s in range(20)}
    assert len(draws) > 1  # the distractor depends on the seed


def test_choice_batch_rows_are_every_option_and_the_loss_matches_the_base_model(tokenizer):
    lm = make_tiny("llama", tokenizer)
    items = [MultipleChoiceItem.cloze(f"c{i}", q, f"Question: {q}\nAnswer:", c, g)
             for i, (q, c, g) in enumerate(QUESTIONS["colors"][:3])]
    examples = [choice_example(lm, it, 64) for it in items]
    assert [len(e.options) for e in examples] == [3, 3, 3] and [e.gold for e in examples] == [0, 1, 2]
    assert examples[1].options[1] == training_example(lm, items[1], 64)  # the gold row is the answer example
    batch = choice_batch(lm, examples, 4, torch.Generator().manual_seed(0))
    assert len(batch["input_ids"]) == 4 and batch["option_item"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    with torch.no_grad():
        logits = lm.model(**{k: batch[k] for k in MODEL_INPUTS}).logits
    expected = choice_loss(logits[batch["answer"]], batch)
    with peft_model(lm, LORA) as model:
        zero_b = lora_state(model)
    loss = AdapterLoss(lm, LORA)
    try:
        with torch.no_grad():
            assert float(loss(zero_b, batch)) == pytest.approx(float(expected), rel=1e-5)
    finally:
        loss.close()
