import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.calibration import (
    QuantileCalibrator,
    TailRarityCalibrator,
    calibrator_from_json,
    fit_calibrator,
)

HELD = np.random.default_rng(0).exponential(1.0, 50_000)


def test_tail_rarity_is_twenty_points_per_factor_of_ten():
    c = TailRarityCalibrator.fit(HELD)
    # exponential(1): P(X >= x) = exp(-x), so x = ln(10^k) is exactly 1 in 10^k
    x = np.log(10.0 ** np.array([1, 2, 3]))
    assert c.transform(x).tolist() == pytest.approx([20, 40, 60], abs=2.5)


def test_beyond_the_held_out_data_the_exponential_tail_keeps_rising_to_the_cap():
    c = TailRarityCalibrator.fit(HELD)
    far = c.transform(np.array([np.log(10**4.5), np.log(1e9)]))
    # 1 in 30,000 lies past the last knot (5 rows of 50,000 beyond it): extrapolated
    assert far[0] == pytest.approx(90, abs=5) and far[1] == 100.0


def test_one_in_ten_thousand_is_far_above_one_in_ten_unlike_a_percentile():
    rare, common = np.log(1e4), np.log(10.0)
    tail, pct = TailRarityCalibrator.fit(HELD), QuantileCalibrator.fit(HELD)
    assert tail.transform(np.array([rare]))[0] - tail.transform(np.array([common]))[0] > 50
    assert pct.transform(np.array([rare]))[0] - pct.transform(np.array([common]))[0] < 11


def test_ties_take_the_least_rare_level():
    raw = np.r_[np.zeros(9000), np.arange(1000.0)]
    assert TailRarityCalibrator.fit(raw).transform(np.array([0.0]))[0] == 0.0


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50))
def test_monotone_and_the_tensor_path_matches(values):
    c = TailRarityCalibrator.fit(HELD)
    raw = np.sort(np.asarray(values))
    out = c.transform(raw)
    assert np.all(np.diff(out) >= 0) and np.all((out >= 0) & (out <= 100))
    on_tensor = c.transform_tensor(torch.as_tensor(raw, dtype=torch.float64)).numpy()
    assert on_tensor == pytest.approx(out, abs=1e-3)


def test_saved_calibrations_round_trip_and_unknown_methods_are_refused():
    for method in ("tail-rarity", "percentile"):
        c = fit_calibrator(HELD, method)
        again = calibrator_from_json(c.to_json())
        assert np.array_equal(again.transform(HELD[:100]), c.transform(HELD[:100]))
    with pytest.raises(ValueError, match="unknown method"):
        fit_calibrator(HELD, "sigmoid")
    with pytest.raises(ValueError, match="tail_scale"):
        TailRarityCalibrator.from_json({"method": "tail-rarity", "knots": [0.0, 1.0], "tail_scale": 0})
