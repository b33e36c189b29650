"""Label-free calibration against hand-computed values: batch calibration removes a shared label prior, PMI
removes how likely an option's words are anyway, partial scoring is left alone."""

import math

import pytest

from degaml.data import MultipleChoiceItem
from degaml.evaluation.calibration import (
    DOMAIN_PREMISE,
    calibrated_result,
    calibrated_scores,
    calibration_kind,
    premise_items,
)
from degaml.evaluation.harness import TaskResult
from degaml.evaluation.metrics import Prediction


def _yes_no(i: int, gold: int) -> MultipleChoiceItem:
    return MultipleChoiceItem.cloze(str(i), f"q{i}", f"q{i}?", ["yes", "no"], gold)


def test_the_kind_follows_the_items():
    assert calibration_kind([_yes_no(0, 0), _yes_no(1, 1)]) == "batch"
    free = [MultipleChoiceItem.cloze("a", "q", "q", ["red", "blue"], 0), MultipleChoiceItem.cloze("b", "q", "q", ["up", "down"], 1)]
    assert calibration_kind(free) == "pmi"
    partial = [MultipleChoiceItem("w", "q", ("x", "y"), 0, ("A x", "A y"), (" ends",) * 2)]
    assert calibration_kind(partial) == "none"
    (premise,) = premise_items(free[:1])
    assert premise.contexts == (DOMAIN_PREMISE,) * 2 and premise.choices == ("red", "blue")


def test_batch_calibration_divides_out_the_mean_probability_of_each_option():
    # Probabilities (0.9, 0.1) and (0.6, 0.4): the model says "yes" to both. Mean: (0.75, 0.25).
    rows = [[math.log(0.9), math.log(0.1)], [math.log(0.6), math.log(0.4)]]
    scores = calibrated_scores("batch", rows)
    assert scores[0] == pytest.approx([math.log(0.9 / 0.75), math.log(0.1 / 0.25)])
    assert scores[1] == pytest.approx([math.log(0.6 / 0.75), math.log(0.4 / 0.25)])
    # The second item flips to "no" once the shared prior is removed; the first stays "yes".
    assert [max(range(2), key=r.__getitem__) for r in scores] == [0, 1]


def test_pmi_subtracts_the_premise_log_likelihood_and_needs_it():
    assert calibrated_scores("pmi", [[-3.0, -5.0]], [[-1.0, -4.0]]) == [[-2.0, -1.0]]
    with pytest.raises(ValueError, match="domain premise"):
        calibrated_scores("pmi", [[-3.0, -5.0]])
    assert calibrated_scores("none", [[-3.0, -5.0]]) == [[-3.0, -5.0]]


def test_a_calibrated_result_predicts_from_the_calibrated_scores():
    predictions = [Prediction("0", 0, 0, 0, [math.log(0.9), math.log(0.1)]),
                   Prediction("1", 1, 0, 0, [math.log(0.6), math.log(0.4)])]
    raw = TaskResult("t", "loglikelihood", "test", 2, {"acc": 0.5}, 1.0, predictions)
    result = calibrated_result(raw, "batch")
    assert [p.pred for p in result.predictions] == [0, 1] == [p.pred_norm for p in result.predictions]
    assert result.metrics["acc"] == result.metrics["acc_norm"] == 1.0
    assert result.predictions[1].raw_logprobs == predictions[1].logprobs
    generative = TaskResult("t", "generative", "test", 2, {"acc": 0.5}, 1.0, predictions)
    with pytest.raises(ValueError, match="log-likelihood protocol"):
        calibrated_result(generative, "batch")
