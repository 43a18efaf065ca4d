import numpy as np
from sklearn.ensemble import IsolationForest

from models.isolation_forest import ForestArrays


def test_tree_arrays_give_sklearns_scores_exactly():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(3000, 7)).astype(np.float32)
    forest = IsolationForest(n_estimators=60, max_samples=200, max_features=0.7, random_state=3).fit(train)
    arrays = ForestArrays.from_sklearn(forest)
    test = (rng.normal(size=(5000, 7)) * 3).astype(np.float32)
    np.testing.assert_allclose(arrays.score_samples(test), forest.score_samples(test), rtol=0, atol=1e-12)


def test_arrays_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(2)
    forest = IsolationForest(n_estimators=10, random_state=0).fit(rng.normal(size=(500, 3)))
    arrays = ForestArrays.from_sklearn(forest)
    np.savez(tmp_path / "f.npz", **arrays.arrays())
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        loaded = ForestArrays.from_arrays(dict(data))
    x = rng.normal(size=(100, 3))
    np.testing.assert_array_equal(loaded.score_samples(x), arrays.score_samples(x))


def test_values_at_the_thresholds_take_sklearns_branch():
    """The traversal compares float32 values with float32 thresholds rounded down: a value
    a hair either side of a float64 threshold still goes where sklearn sends it."""
    rng = np.random.default_rng(4)
    train = rng.normal(size=(2000, 3)).astype(np.float32)
    forest = IsolationForest(n_estimators=20, max_samples=128, random_state=5).fit(train)
    arrays = ForestArrays.from_sklearn(forest)
    inner = arrays.left != -1
    cuts = arrays.threshold[inner]
    near = cuts.astype(np.float32)
    candidates = np.concatenate(
        [near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))]
    )
    assert (candidates.astype(np.float64) > np.resize(cuts, len(candidates))).any(), "some round up"
    columns = arrays.feature[inner]
    test = np.repeat(rng.normal(size=(1, 3)).astype(np.float32), len(candidates), axis=0)
    test[np.arange(len(candidates)), np.resize(columns, len(candidates))] = candidates
    np.testing.assert_allclose(arrays.score_samples(test), forest.score_samples(test), rtol=0, atol=1e-12)
