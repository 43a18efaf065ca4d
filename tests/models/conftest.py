from __future__ import annotations

import numpy as np
import pytest

from models.training import replay_features
from operators.events import TransactionEvent
from operators.features import feature_matrix
from tests.support import events_of


@pytest.fixture(scope="session")
def training_events() -> list[TransactionEvent]:
    return events_of(3, 12_000, 1_200, 0.05)[0]


@pytest.fixture(scope="session")
def training_matrix(training_events) -> np.ndarray:
    features, ordered = replay_features(training_events)
    return feature_matrix(features, ordered)


@pytest.fixture(scope="session")
def training_labels(training_matrix) -> np.ndarray:
    """Labels for the scorer contract: the top tenth of amounts is "fraud" (spread over time,
    unlike the workload's injected frauds, so every slice holds both classes)."""
    amount = training_matrix[:, 0]
    return (amount > np.quantile(amount, 0.9)).astype(int)
