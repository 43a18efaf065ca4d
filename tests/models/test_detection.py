"""Both models rank injected anomalies above normal traffic (ROC-AUC > 0.9)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.autoencoder import AutoencoderScorer
from models.isolation_forest import IsolationForestScorer
from models.training import replay_features
from operators.features import feature_matrix
from tests.support import events_of


@pytest.fixture(scope="module")
def labelled():
    events, labels = events_of(4, 12_000, 1_200, 0.2)
    features, ordered = replay_features(events)
    # Blocked countries carry no feature signal by design: that is the rules' job.
    y = np.array([labels.get(e.event_id) not in (None, "blocked_country") for e in ordered])
    return feature_matrix(features, ordered), y


@pytest.mark.parametrize(
    "scorer",
    [IsolationForestScorer(seed=0), AutoencoderScorer(epochs=30, seed=0, device="cpu")],
    ids=lambda s: s.name,
)
def test_anomalies_rank_above_normal_events(scorer, training_matrix, labelled):
    x, y = labelled
    scores = scorer.fit(training_matrix).score_batch(x)
    auc = roc_auc_score(y, scores)
    assert auc > 0.9, f"{scorer.name}: ROC-AUC {auc:.3f}"


def test_the_autoencoder_flags_an_event_extreme_in_every_correlated_feature():
    """Two features that always move together: a point far out along their line is
    reconstructed almost perfectly by an unbounded network, not by a bounded one."""
    rng = np.random.default_rng(0)
    base = rng.lognormal(3.0, 0.5, 4_000)
    x = np.column_stack([base, base * rng.uniform(0.9, 1.1, 4_000), rng.normal(0, 1, 4_000)]).astype(
        np.float32
    )
    odd = np.array([[base.max() * 40, base.max() * 40, 0.0]], dtype=np.float32)  # consistent, but far out
    typical = x[:200]
    bounded = AutoencoderScorer(hidden=(8, 2), epochs=30, seed=0, device="cpu").fit(x)
    unbounded = AutoencoderScorer(hidden=(8, 2), epochs=30, seed=0, device="cpu", envelope=0.0).fit(x)
    assert bounded.raw(odd)[0] > 10 * np.quantile(bounded.raw(typical), 0.99)
    assert bounded.raw(odd)[0] > 10 * unbounded.raw(odd)[0]
