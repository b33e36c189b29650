"""DeGAML-k's supervised choice (`adaptation.supervised`), the held-out choice loss it selects by, and the
answer-token loss the fitting minimizes."""

import pytest
import torch

from degaml.adaptation.supervised import FINE_TUNED, choose_supervised, split_support
from degaml.config import LoraSettings
from degaml.data import MultipleChoiceItem
from degaml.models import peft_model
from degaml.sft import collate, examples_loss, fine_tune, training_example
from tests.conftest import QUESTIONS, make_tiny

LORA = LoraSettings(r=2, alpha=4)


def _items(task: str) -> list:
    return [MultipleChoiceItem.cloze(f"{task}{i}", q, f"Question: {q}\nAnswer:", c, g)
            for i, (q, c, g) in enumerate(QUESTIONS[task])]


def _examples(lm, task: str) -> list:
    return [training_example(lm, item, 64) for item in _items(task)]


def test_examples_loss_is_the_answer_token_mean_whatever_the_batching(tokenizer):
    lm = make_tiny("llama", tokenizer)
    examples = _examples(lm, "colors")[:6]
    state = fine_tune(lm, LORA, examples, 2, 1e-2, 2, 0)[0]
    with peft_model(lm, LORA, state) as model, torch.no_grad():  # HF's loss: the mean over the answer tokens
        expected = float(model(**collate(examples, tokenizer.pad_token_id)).loss)
    for batch_size in (1, 4, 6):
        assert examples_loss(lm, LORA, state, examples, batch_size) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="at least one example"):
        examples_loss(lm, LORA, state, [])


def test_the_support_split_is_seeded_disjoint_and_refuses_an_empty_side():
    support = [([i], [i]) for i in range(10)]
    fit, held = split_support(support, 3, seed=0)
    assert len(fit) == 7 and len(held) == 3 and sorted(fit + held) == support
    assert split_support(support, 3, seed=0) == (fit, held)
    assert split_support(support, 3, seed=1) != (fit, held)
    for select in (0, 10):
        with pytest.raises(ValueError, match=f"select = {select}"):
            split_support(support, select, seed=0)


def test_the_choice_is_the_candidate_with_the_lowest_held_out_choice_loss(tokenizer):
    """Without steps the starts compete as they are; with steps every start also competes fine-tuned, each
    scored on items none of them trained on, by the choice loss."""
    from degaml.adaptation.supervised import choice_set_loss
    from degaml.choice import MODEL_INPUTS, choice_example, choice_loss, collate_choices

    lm = make_tiny("llama", tokenizer)
    numbers, colors = _examples(lm, "numbers"), _examples(lm, "colors")
    starts = {"own": fine_tune(lm, LORA, numbers[:12], 12, 1e-2, 4, 0)[0],
              "other": fine_tune(lm, LORA, colors[:12], 12, 1e-2, 4, 0)[0]}
    support = _items("numbers")[12:24]

    kept = choose_supervised(lm, LORA, starts, support, select=4, steps=0, lr=1e-2, batch_size=4, seed=0)
    assert set(kept.selection_losses) == {"own", "other"} and kept.support_losses == {}
    assert kept.choice == min(kept.selection_losses, key=kept.selection_losses.get) and kept.target_steps == 0
    assert kept.state is starts[kept.choice]

    tuned = choose_supervised(lm, LORA, starts, support, select=4, steps=6, lr=1e-2, batch_size=4, seed=0)
    assert set(tuned.selection_losses) == {"own", "other", "own" + FINE_TUNED, "other" + FINE_TUNED}
    assert tuned.choice == min(tuned.selection_losses, key=tuned.selection_losses.get)
    # The baselines' 6 steps are DeGAML-k's budget in all: 3 for each fine-tuned start.
    assert (tuned.fit_examples, tuned.selection_examples, tuned.target_steps) == (8, 4, 6)
    assert {name: len(trace) for name, trace in tuned.support_losses.items()} == \
        {"own" + FINE_TUNED: 3, "other" + FINE_TUNED: 3}
    odd = choose_supervised(lm, LORA, starts, support, select=4, steps=3, lr=1e-2, batch_size=4, seed=0)
    assert {name: len(trace) for name, trace in odd.support_losses.items()} == \
        {"own" + FINE_TUNED: 2, "other" + FINE_TUNED: 1} and odd.target_steps == 3
    fit, held = split_support(support, 4, seed=0)
    chosen = tuned.selection_losses[tuned.choice]
    held_examples = [choice_example(lm, item, 256) for item in held]
    assert choice_set_loss(lm, LORA, tuned.state, held_examples) == pytest.approx(chosen, rel=1e-5)
    with peft_model(lm, LORA, tuned.state) as model, torch.no_grad():  # all four items in one batch, by hand
        batch = collate_choices(lm, held_examples)
        logits = model(**{k: batch[k] for k in MODEL_INPUTS}).logits
        answers = logits[batch["answer"]]  # every position's logits, then the answers' picked
        assert float(choice_loss(answers, batch)) == \
            pytest.approx(chosen, rel=1e-5)
    # The fitting part is trained on (its answer-token loss falls); the held-out choice losses then differ.
    trace = tuned.support_losses["other" + FINE_TUNED]
    assert trace[-1] < trace[0] and tuned.selection_losses["other" + FINE_TUNED] != tuned.selection_losses["other"]
    again = choose_supervised(lm, LORA, starts, support, select=4, steps=6, lr=1e-2, batch_size=4, seed=0)
    assert again.choice == tuned.choice
    for key, value in tuned.state.items():
        torch.testing.assert_close(again.state[key], value)
