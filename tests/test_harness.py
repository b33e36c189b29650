import json
import math

import pytest

from degaml.config import DataConfig, EvalConfig, PartitionConfig
from degaml.data import MultipleChoiceItem
from degaml.evaluation import evaluate_items, format_table, mean_and_stderr


def test_mean_and_stderr_hand_computed():
    mean, se = mean_and_stderr([1.0, 0.0, 1.0, 1.0])
    assert mean == 0.75
    assert se == pytest.approx(math.sqrt((3 * 0.25**2 + 0.75**2) / 3 / 4))


def test_prediction_correctness_reads_the_metric_s_prediction():
    from degaml.evaluation.metrics import Prediction, prediction_correctness

    predictions = [Prediction("a", 1, 1, 0), Prediction("b", 0, 1, 0)]
    assert prediction_correctness(predictions, "acc") == [1.0, 0.0]
    assert prediction_correctness(predictions, "acc_norm") == [0.0, 1.0]


def test_loglikelihood_result_is_consistent_with_its_predictions(tiny_lm):
    items = [MultipleChoiceItem.cloze(str(i), "q", "Question: Which gas?\nAnswer:",
                                      ["carbon dioxide", "oxygen", "a"], i % 3) for i in range(6)]
    result = evaluate_items(tiny_lm, "toy", "test", items, EvalConfig(batch_size=4), progress=False)
    assert result.num_items == 6 and result.seconds > 0
    for p, item in zip(result.predictions, items):
        assert p.pred == max(range(3), key=lambda i: (p.logprobs[i], -i))
        normed = [lp / len(c) for lp, c in zip(p.logprobs, item.choices)]
        assert p.pred_norm == max(range(3), key=lambda i: (normed[i], -i))
    assert result.metrics["acc"] == sum(p.pred == p.gold for p in result.predictions) / 6
    table = format_table([result])
    assert "| toy | 6 |" in table
    json.dumps(result.to_dict())  # serializable


def test_partial_scoring_acc_norm_equals_acc(tiny_lm):
    items = [MultipleChoiceItem(id=str(i), question="q", choices=("Sarah", "Maria"), gold=i % 2,
                                contexts=("Sarah beat Maria so Sarah", "Sarah beat Maria so Maria"),
                                continuations=(" always won.",) * 2) for i in range(4)]
    result = evaluate_items(tiny_lm, "wino", "test", items, EvalConfig(), progress=False)
    assert [p.pred for p in result.predictions] == [p.pred_norm for p in result.predictions]


def test_empty_selection_is_refused(tiny_lm):
    with pytest.raises(ValueError, match="no items"):
        evaluate_items(tiny_lm, "toy", "test", [], EvalConfig(), progress=False)


def test_data_config_validation():
    with pytest.raises(ValueError, match="leave room for a train partition"):
        PartitionConfig(validation_fraction=0.5, test_fraction=0.5)
    assert DataConfig(tasks="a,b").tasks == ["a", "b"] == DataConfig(tasks=["a,b"]).tasks
    with pytest.raises(ValueError, match="data.limit must be >= 1"):
        DataConfig(limit=0)


def test_a_context_budget_reaches_the_scorer_and_cuts_the_context_on_the_left(tiny_lm):
    from degaml.evaluation.loglikelihood import LoglikelihoodScorer

    context = "Question: " + "which of these gases do plants take in from the air by day? " * 6 + "\nAnswer:"
    items = [MultipleChoiceItem.cloze(str(i), "q", context, ["carbon dioxide", "oxygen"], i % 2) for i in range(2)]
    whole = evaluate_items(tiny_lm, "toy", "test", items, EvalConfig(), progress=False)
    cut = evaluate_items(tiny_lm, "toy", "test", items, EvalConfig(max_length=8), progress=False)
    assert [p.logprobs for p in cut.predictions] == \
        [[s.logprob for s in row] for row in LoglikelihoodScorer(tiny_lm, max_length=8).score(items, progress=False)]
    assert [p.logprobs for p in whole.predictions] != [p.logprobs for p in cut.predictions]
    with pytest.raises(ValueError, match="eval.max_length must be >= 2"):
        EvalConfig(max_length=1)


def test_the_context_budget_leaves_score_and_reward_cache_keys_as_they_were():
    from dataclasses import asdict

    from degaml.io import key_fields

    assert key_fields(EvalConfig()) == {k: v for k, v in asdict(EvalConfig()).items() if k != "max_length"}
    assert key_fields(EvalConfig(max_length=256))["max_length"] == 256
