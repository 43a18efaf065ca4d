import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from operators.ensemble import EnsembleConfig, combine, rules_score
from operators.rules import RuleHit

CFG = EnsembleConfig(profile="weighted")
EVIDENCE = EnsembleConfig()


def hit(points: int, force: bool = False) -> RuleHit:
    return RuleHit("r", points, "why", force)


def test_all_components_use_the_default_weights():
    v = combine([hit(50)], {"isolation_forest": 80.0, "autoencoder": 20.0}, CFG)
    assert v.fraud_score == pytest.approx(0.85 * 50 + 0.10 * 80 + 0.05 * 20)
    assert v.scores == {"rules": 50.0, "isolation_forest": 80.0, "autoencoder": 20.0, "supervised": None}
    v = combine([hit(50)], {"isolation_forest": 80.0, "autoencoder": 20.0, "supervised": 90.0}, CFG)
    assert v.fraud_score == pytest.approx((0.85 * 50 + 0.10 * 80 + 0.05 * 20 + 1.0 * 90) / 2.0, abs=0.01)


def test_absent_components_are_renormalised_away_and_reported_as_null():
    v = combine([hit(50)], {}, CFG)
    assert v.fraud_score == 50.0
    assert v.scores == {"rules": 50.0, "isolation_forest": None, "autoencoder": None, "supervised": None}
    v = combine([hit(50)], {"isolation_forest": 100.0}, CFG)
    assert v.fraud_score == pytest.approx((0.85 * 50 + 0.10 * 100) / 0.95, abs=0.01)


def test_evidence_adds_rule_points_and_a_quarter_of_each_anomaly_score():
    assert EVIDENCE.profile == "evidence"
    v = combine([hit(20)], {"isolation_forest": 60.0, "autoencoder": 40.0}, EVIDENCE)
    assert v.fraud_score == pytest.approx(20 + 0.25 * 60 + 0.25 * 40)
    rare = combine([], {"isolation_forest": 100.0, "autoencoder": 100.0}, EVIDENCE)
    assert rare.risk_level == "MEDIUM"  # models alone ask for a review, never block
    assert (
        combine([hit(25)], {"isolation_forest": 100.0, "autoencoder": 100.0}, EVIDENCE).risk_level == "HIGH"
    )
    assert combine([hit(20)], {}, EVIDENCE).fraud_score == 20.0


def test_evidence_follows_the_supervised_model_when_present():
    v = combine([hit(50)], {"isolation_forest": 90.0, "autoencoder": 90.0, "supervised": 3.0}, EVIDENCE)
    assert v.fraud_score == 3.0 and v.risk_level == "LOW"
    blocked = combine([hit(85, force=True)], {"supervised": 3.0}, EVIDENCE)
    assert blocked.risk_level == "HIGH" and blocked.fraud_score == 70.0


def test_levels_and_decisions_at_the_thresholds():
    assert (combine([hit(39)], {}, CFG).risk_level) == "LOW"
    medium = combine([hit(40)], {}, CFG)
    assert (medium.risk_level, medium.decision, medium.is_blocked) == ("MEDIUM", "review", False)
    high = combine([hit(70)], {}, CFG)
    assert (high.risk_level, high.decision, high.is_blocked) == ("HIGH", "block", True)


def test_rules_score_is_capped_at_100():
    assert rules_score([hit(85), hit(30)]) == 100.0


def test_a_blocklist_hit_is_high_on_its_own_even_with_calm_models():
    v = combine([hit(85, force=True)], {"isolation_forest": 0.0, "autoencoder": 0.0}, CFG)
    assert v.risk_level == "HIGH" and v.fraud_score == 72.25
    low_points = combine([hit(5, force=True)], {"isolation_forest": 0.0, "autoencoder": 0.0}, CFG)
    assert low_points.risk_level == "HIGH" and low_points.fraud_score == 70.0


@given(
    st.lists(st.integers(0, 100), max_size=6), st.none() | st.floats(0, 100), st.none() | st.floats(0, 100)
)
def test_score_is_always_in_range(points, iso, ae):
    v = combine([hit(p) for p in points], {"isolation_forest": iso, "autoencoder": ae}, CFG)
    assert 0.0 <= v.fraud_score <= 100.0
    assert v.risk_level in {"LOW", "MEDIUM", "HIGH"}


@pytest.mark.parametrize(
    "bad",
    [
        {"weights": {"rules": 0}},
        {"weights": {"rules": 1, "gbm": 1}},
        {"medium_threshold": 80, "high_threshold": 70},
        {"profile": "average"},
        {"evidence_weights": {"supervised": 1.0}},
        {"evidence_weights": {"autoencoder": -1.0}},
    ],
)
def test_invalid_ensemble_config_is_rejected(bad):
    with pytest.raises(ValidationError):
        EnsembleConfig.model_validate(bad)


score = st.one_of(st.none(), st.floats(0, 100))


@given(
    st.lists(
        st.tuples(st.lists(st.integers(0, 60), max_size=3), st.booleans(), score, score, score), max_size=30
    ),
    st.dictionaries(
        st.sampled_from(["isolation_forest", "autoencoder", "supervised"]), st.floats(0, 3), max_size=3
    ),
    st.sampled_from(["weighted", "evidence"]),
)
def test_offline_scores_over_columns_equal_combine_event_by_event(rows, weights, profile):
    import numpy as np

    from operators.ensemble import ensemble_scores, rules_scores

    evidence = {k: v for k, v in weights.items() if k != "supervised"}
    cfg = EnsembleConfig(profile=profile, weights={"rules": 0.85, **weights}, evidence_weights=evidence)
    names = [[f"r{k}" for k in range(len(points))] for points, *_ in rows]
    points = {n: p for (pts, *_), ns in zip(rows, names, strict=True) for n, p in zip(ns, pts, strict=True)}
    served = [
        combine(
            [RuleHit(n, points[n], "why", force) for n in ns],
            {"isolation_forest": i, "autoencoder": a, "supervised": s},
            cfg,
        ).fraud_score
        for ns, (_, force, i, a, s) in zip(names, rows, strict=True)
    ]

    def column(k):
        return np.array([np.nan if r[k] is None else r[k] for r in rows], dtype=float)

    offline = ensemble_scores(
        {
            "rules": rules_scores(names, points),
            "isolation_forest": column(2),
            "autoencoder": column(3),
            "supervised": column(4),
        },
        cfg,
        np.array([force and bool(ns) for ns, (_, force, *_) in zip(names, rows, strict=True)], dtype=bool),
    )
    assert offline.tolist() == pytest.approx(served, abs=0.011)
