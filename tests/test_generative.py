import pytest

from degaml.config import EvalConfig
from degaml.data import MultipleChoiceItem
from degaml.evaluation import evaluate_items, extract_answer, generate_answers
from degaml.evaluation.generative import adds_special_tokens, build_prompt, format_question
from degaml.models import LoadedModel
from degaml.sft import training_example


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
    parsed = [p.pred for p in result.predictions]
    assert result.metrics["unparseable"] == sum(p is None for p in parsed)
    assert result.metrics["acc"] == sum(p == it.gold for p, it in zip(parsed, items)) / 5


@pytest.mark.parametrize("chat", [False, True])
def test_a_generative_training_example_is_the_prompt_generation_reads_then_the_bracketed_letter(tiny_lm, chat):
    import copy

    tok = copy.deepcopy(tiny_lm.tokenizer)
    if chat:
        tok.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                             "{% if add_generation_prompt %}<assistant>{% endif %}")
    lm = LoadedModel(model=tiny_lm.model, tokenizer=tok, add_special_tokens=True, source="tiny")
    item = MultipleChoiceItem.cloze("q", "Which gas do plants absorb?", "c", ["oxygen", "carbon dioxide", "air"], 1)
    prompt = tok(build_prompt(lm, item), add_special_tokens=adds_special_tokens(lm)).input_ids
    for option, letter in ((None, "[B]"), (2, "[C]")):
        tokens, labels = training_example(lm, item, 512, option, answer_format="generative")
        assert tokens[:len(prompt)] == prompt and labels[:len(prompt)] == [-100] * len(prompt)
        assert tok.decode(tokens[len(prompt):]) == letter and labels[len(prompt):] == tokens[len(prompt):]
    tokens, labels = training_example(lm, item, 10, answer_format="generative")  # left-truncated: the answer stays
    assert len(tokens) == 10 and tok.decode([t for t, lab in zip(tokens, labels) if lab != -100]) == "[B]"
