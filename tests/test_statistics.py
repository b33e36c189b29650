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


def test_the_recovered_share_is_the_gain_over_the_headroom_by_hand():
    from degaml.evaluation.statistics import recovered_share

    method = {"a": [1, 1, 0, 0], "b": [1, 0, 0, 0]}
    floor = {"a": [0, 0, 0, 0], "b": [0, 0, 0, 0]}
    ceiling = {"a": [1, 1, 1, 1], "b": [1, 1, 0, 0]}
    share = recovered_share(method, floor, ceiling, resamples=2000)
    # gains: a 0.5, b 0.25 -> 0.375; headroom: a 1.0, b 0.5 -> 0.75; share 0.5
    assert share.share == pytest.approx(0.5) and share.gain.difference == pytest.approx(37.5)
    assert share.headroom.difference == pytest.approx(75.0) and share.defined
    assert share.low <= 0.5 <= share.high
    flat = recovered_share(method, floor, floor, resamples=200)
    assert not flat.defined and str(flat).startswith("undefined")
