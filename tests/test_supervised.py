"""DeGAML-k's supervised choice (`adaptation.supervised`) and the held-out answer loss it selects by."""

import pytest
import torch

from degaml.adaptation.supervised import FINE_TUNED, choose_supervised, split_support
from degaml.config import LoraSettings
from degaml.data import MultipleChoiceItem
from degaml.models import peft_model
from degaml.sft import collate, examples_loss, fine_tune, training_example
from tests.conftest import QUESTIONS, make_tiny

LORA = LoraSettings(r=2, alpha=4)


def _examples(lm, task: str) -> list:
    return [training_example(lm, MultipleChoiceItem.cloze(f"{task}{i}", q, f"Question: {q}\nAnswer:", c, g), 64)
            for i, (q, c, g) in enumerate(QUESTIONS[task])]


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


def test_the_choice_is_the_candidate_with_the_lowest_held_out_loss(tokenizer):
    """Without steps, a start trained on the target's own task beats one trained on another task; with steps,
    every start also competes fine-tuned, each scored on examples none of them trained on."""
    lm = make_tiny("llama", tokenizer)
    numbers, colors = _examples(lm, "numbers"), _examples(lm, "colors")
    starts = {"own": fine_tune(lm, LORA, numbers[:12], 12, 1e-2, 4, 0)[0],
              "other": fine_tune(lm, LORA, colors[:12], 12, 1e-2, 4, 0)[0]}
    support = numbers[12:24]

    kept = choose_supervised(lm, LORA, starts, support, select=4, steps=0, lr=1e-2, batch_size=4, seed=0)
    assert set(kept.selection_losses) == {"own", "other"} and kept.support_losses == {}
    assert kept.choice == "own" and kept.state is starts["own"]

    tuned = choose_supervised(lm, LORA, starts, support, select=4, steps=6, lr=1e-2, batch_size=4, seed=0)
    assert set(tuned.selection_losses) == {"own", "other", "own" + FINE_TUNED, "other" + FINE_TUNED}
    assert tuned.choice == min(tuned.selection_losses, key=tuned.selection_losses.get)
    assert (tuned.fit_examples, tuned.selection_examples) == (8, 4)
    fit, held = split_support(support, 4, seed=0)
    assert examples_loss(lm, LORA, tuned.state, held) == pytest.approx(tuned.selection_losses[tuned.choice], rel=1e-5)
    # Fine-tuning on the fitting part lowers the held-out loss of the start that knew nothing of the task.
    assert tuned.selection_losses["other" + FINE_TUNED] < tuned.selection_losses["other"]
    assert all(len(trace) == 6 for trace in tuned.support_losses.values())
    again = choose_supervised(lm, LORA, starts, support, select=4, steps=6, lr=1e-2, batch_size=4, seed=0)
    assert again.choice == tuned.choice
    for key, value in tuned.state.items():
        torch.testing.assert_close(again.state[key], value)
