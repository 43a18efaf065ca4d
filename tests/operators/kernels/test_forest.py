"""The compiled forest traversal against the reference NumPy one
(``ForestArrays._path_lengths``): the same path lengths for any forest and input, NaN and
values on the thresholds included, and a corrupt forest is an error, not a crash."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from models.isolation_forest import ForestArrays
from tests.operators.kernels.conftest import compiled


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_forest_walks_to_the_reference_leaves(seed):
    kernel = compiled("forest")
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(600, 7)).astype(np.float32)
    forest = ForestArrays.from_sklearn(IsolationForest(n_estimators=40, random_state=seed).fit(train))
    flat = forest._flat()
    x = rng.normal(size=(3_000, 7)).astype(np.float32)
    x[::7, 2] = np.nan
    thresholds = flat[2][~np.isnan(flat[2])]
    x[::5, 0] = thresholds[: len(x[::5])] if len(thresholds) >= len(x[::5]) else x[::5, 0]
    want = forest._path_lengths(x, flat)
    got = np.zeros(len(x))
    right, feature, threshold, leaf_value, base = flat
    kernel.path_lengths(x, right, feature, threshold, leaf_value, base.ravel(), forest.depth, got)
    assert np.array_equal(got, want)
    assert np.array_equal(forest.score_samples(x), -(2.0 ** (-want / (40 * forest.normaliser))))


def test_a_corrupt_forest_is_an_error_not_a_crash():
    kernel = compiled("forest")
    forest = ForestArrays.from_sklearn(IsolationForest(n_estimators=2, random_state=0).fit(np.eye(9)))
    right, feature, threshold, leaf_value, base = (a.copy() for a in forest._flat())
    feature[base.ravel()[0]] = 99  # a column the input does not have
    with pytest.raises(ValueError, match="out of range"):
        kernel.path_lengths(
            np.zeros((3, 9), np.float32),
            right,
            feature,
            threshold,
            leaf_value,
            base.ravel(),
            forest.depth,
            np.zeros(3),
        )
