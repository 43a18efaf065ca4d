import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from models.supervised import BoostedTrees, SupervisedScorer


def data(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 3]) + 0.5 * rng.normal(size=n)
    return x, (signal > 1.8).astype(int)


def test_exported_trees_compute_what_sklearn_computes():
    x, y = data()
    model = HistGradientBoostingClassifier(max_iter=60, max_depth=5, early_stopping=False).fit(x, y)
    trees = BoostedTrees.from_sklearn(model)
    np.testing.assert_allclose(trees.margin(x), model.decision_function(x), rtol=0, atol=1e-9)
    loaded = BoostedTrees.from_arrays(trees.arrays())
    np.testing.assert_array_equal(loaded.margin(x[:100]), trees.margin(x[:100]))


def test_probabilities_are_calibrated_on_later_rows():
    x, y = data(20_000)
    scorer = SupervisedScorer(max_iter=60).fit(x[:15_000], y[:15_000])
    p = scorer.probability(x[15_000:])
    held = y[15_000:]
    # calibration: predicted and observed fraud rates agree overall and in the riskiest decile
    assert abs(p.mean() - held.mean()) < 0.02
    top = p >= np.quantile(p, 0.9)
    assert abs(p[top].mean() - held[top].mean()) < 0.08
    assert held[top].mean() > 5 * held.mean()


def test_needs_labels_with_both_classes():
    x, y = data(500)
    for bad in (None, np.zeros(500, dtype=int), y[:10]):
        try:
            SupervisedScorer().fit(x, bad)
        except ValueError:
            continue
        raise AssertionError("fit should refuse")


def test_trees_learn_from_every_fraud_and_a_bounded_sample_of_legitimate_rows():
    y = np.zeros(2000, dtype=int)
    y[::100] = 1  # 20 frauds, 1,980 legitimate rows
    rows = SupervisedScorer(legit_per_fraud=5, seed=3)._tree_rows(y)
    assert len(rows) == 20 + 100 and set(np.flatnonzero(y)) <= set(rows) and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, SupervisedScorer(legit_per_fraud=5, seed=3)._tree_rows(y))  # seeded
    assert len(SupervisedScorer(legit_per_fraud=None)._tree_rows(y)) == 2000
    with pytest.raises(ValueError, match="legit_per_fraud"):
        SupervisedScorer(legit_per_fraud=0)
