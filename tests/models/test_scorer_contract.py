"""Every scorer passes the same checks (the River way: one contract, all estimators)."""

from __future__ import annotations

import numpy as np
import pytest

from models.autoencoder import AutoencoderScorer
from models.base import Scorer
from models.isolation_forest import IsolationForestScorer
from models.supervised import SupervisedScorer

SCORERS = {
    "isolation_forest": lambda seed: IsolationForestScorer(n_estimators=50, seed=seed),
    "autoencoder": lambda seed: AutoencoderScorer(hidden=(16, 4), epochs=4, seed=seed, device="cpu"),
    "supervised": lambda seed: SupervisedScorer(max_iter=40, seed=seed),
}
ANOMALY = {"isolation_forest", "autoencoder"}
"""Scorers calibrated to a uniform 0-100 on normal traffic (the supervised one gives probabilities)."""


class Fitting:
    """A scorer factory whose ``fit`` gets the labels too (unsupervised scorers ignore them)."""

    def __init__(self, name, labels):
        self.name, self.labels = name, labels

    def __call__(self, seed):
        scorer = SCORERS[self.name](seed)
        fit = scorer.fit
        scorer.fit = lambda x, y=None: fit(x, self.labels[: len(x)] if y is None else y)
        return scorer


@pytest.fixture(params=sorted(SCORERS))
def make(request, training_labels):
    return Fitting(request.param, training_labels)


def test_implements_the_protocol(make):
    scorer = make(0)
    assert isinstance(scorer, Scorer)
    assert scorer.name in SCORERS


def test_deterministic_under_a_seed(make, training_matrix):
    x = training_matrix[:3000]
    a = make(7).fit(x).score_batch(x[:200])
    b = make(7).fit(x).score_batch(x[:200])
    np.testing.assert_array_equal(a, b)


def test_scores_are_in_range_one_per_row(make, training_matrix, training_labels):
    sample = np.sort(np.random.default_rng(0).permutation(len(training_matrix))[:4000])
    scorer = make(0).fit(training_matrix[sample], training_labels[sample])
    scores = scorer.score_batch(training_matrix)
    assert scores.shape == (len(training_matrix),)
    assert np.all((scores >= 0) & (scores <= 100))
    assert scorer.score_batch(training_matrix[:0]).shape == (0,)
    if scorer.name in ANOMALY:
        # tail rarity on held-out normal traffic: 20 points per factor of ten, so on
        # training-like data about 1 row in 10 scores 20 or more, and the mean is 20 / ln 10
        assert 0.05 < float(np.mean(scores >= 20)) < 0.16
        assert 6 < float(scores.mean()) < 12


def test_handles_missing_and_extreme_values(make, training_matrix):
    scorer = make(0).fit(training_matrix[:3000])
    odd = training_matrix[:4].copy()
    odd[0, :] = np.nan
    odd[1, 0] = np.inf
    odd[2, 0] = 1e12
    scores = scorer.score_batch(odd)
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 100))
    assert scores[2] > scorer.score_batch(training_matrix[2:3])[0]  # an absurd amount is more anomalous


def test_survives_save_and_load(make, training_matrix, tmp_path):
    scorer = make(0).fit(training_matrix[:3000])
    scorer.save(tmp_path)
    loaded = type(scorer).load(tmp_path)
    np.testing.assert_allclose(
        loaded.score_batch(training_matrix[:500]),
        scorer.score_batch(training_matrix[:500]),
        rtol=0,
        atol=1e-2,  # a CUDA load (auto device) rounds differently from the CPU fit
    )
    assert loaded.describe()["name"] == scorer.name


def test_batch_scores_equal_one_at_a_time_scores(make, training_matrix):
    scorer = make(0).fit(training_matrix[:3000])
    batch = scorer.score_batch(training_matrix[:50])
    single = np.concatenate([scorer.score_batch(training_matrix[i : i + 1]) for i in range(50)])
    np.testing.assert_allclose(batch, single, atol=1e-3)
