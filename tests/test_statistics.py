import numpy as np
import pytest

from degaml.evaluation.statistics import paired_bootstrap


def test_identical_methods_tie_at_zero():
    a = {"t": [1, 0, 1, 1, 0] * 20}
    result = paired_bootstrap(a, a)
    assert result.difference == 0 and result.low == 0 and result.high == 0 and result.verdict == "ties"


def test_point_estimate_is_the_task_averaged_difference_by_hand():
    a = {"x": [1, 1, 1, 1], "y": [1, 0]}
    b = {"x": [0, 1, 0, 1], "y": [0, 0]}
    result = paired_bootstrap(a, b, resamples=200)
    assert result.difference == pytest.approx(100 * (0.5 + 0.5) / 2)
    assert result.items == 6 and result.tasks == 2


def test_a_clear_win_has_an_interval_above_zero_and_noise_spans_it():
    rng = np.random.default_rng(1)
    b = rng.integers(0, 2, 400)
    better = np.where(rng.random(400) < 0.3, 1, b)  # A fixes 30% of items, breaks none
    assert paired_bootstrap({"t": better}, {"t": b}).verdict == "beats"
    noisy = np.where(rng.random(400) < 0.05, 1 - b, b)  # flips 5% both ways
    assert paired_bootstrap({"t": noisy}, {"t": b}).verdict == "ties"


def test_unpaired_input_is_refused():
    with pytest.raises(ValueError, match="same tasks"):
        paired_bootstrap({"a": [1]}, {"b": [1]})
    with pytest.raises(ValueError, match="task 'a'"):
        paired_bootstrap({"a": [1, 0]}, {"a": [1]})
