import pytest

from degaml.config import EvalConfig
from degaml.data import MultipleChoiceItem
from degaml.evaluation import evaluate_items, extract_answer, generate_answers
from degaml.evaluation.generative import format_question


@pytest.mark.parametrize("text, n, expected", [
    ("The answer is [B].", 4, 1),
    ("A is tempting, but [C]", 4, 2),  # bracketed letter wins over an earlier bare one
    ("I think B", 4, 1),
    ("Answer: F", 6, 5),  # beyond D
    ("[E]", 4, None),  # not a valid option for 4 choices
    ("Because it is about Apples", 4, None),  # letters inside words do not count
    ("", 2, None),
])
def test_extract_answer(text, n, expected):
    assert extract_answer(text, n) == expected


def test_format_question_letters_every_option():
    item = MultipleChoiceItem.cloze("x", "Pick one.", "c", ["a", "b", "c", "d", "e"], 0)
    assert format_question(item) == "Pick one.\nA: a\nB: b\nC: c\nD: d\nE: e"


def test_generative_protocol_runs_and_counts_unparseable(tiny_lm):
    items = [MultipleChoiceItem.cloze(str(i), f"Question {i}?", "c", ["yes", "no"], i % 2) for i in range(5)]
    answers = generate_answers(tiny_lm, items, batch_size=2, max_new_tokens=3, progress=False)
    assert len(answers) == 5
    result = evaluate_items(tiny_lm, "toy", "test", items, EvalConfig(protocol="generative", batch_size=2,
                                                                      max_new_tokens=3), progress=False)
    parsed = [p["pred"] for p in result.predictions]
    assert result.metrics["unparseable"] == sum(p is None for p in parsed)
    assert result.metrics["acc"] == sum(p == it.gold for p, it in zip(parsed, items)) / 5
