from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from operators.events import Location, TransactionEvent
from operators.features import compute_features
from operators.rules import RuleContext, RulesConfig
from operators.rulesets import VARIABLES, RuleSet, RuleSetDocument
from operators.state import Seen, UserState

T0 = datetime(2025, 6, 2, 12, tzinfo=UTC)


def jewelry(amount: float) -> tuple[TransactionEvent, object]:
    ev = TransactionEvent(
        "e1", "u1", amount, T0, merchant_category="jewelry", location=Location(48.8, 2.3, country="FR")
    )
    state = UserState()
    for i in range(5):
        state.push(Seen(T0.timestamp() - 86_400 * (i + 1), 50.0))
    return ev, compute_features(state, ev, T0.timestamp())


DOC = {
    "rules": {"unusual_hours": {"enabled": False, "points": 10}},
    "custom": [
        {
            "name": "big_jewelry",
            "when": 'amount > 3 * user_mean_amount and merchant_category in ["jewelry", "watches"]',
            "points": 30,
            "reason": "{amount} on {merchant_category}, more than 3x the mean of {user_mean_amount}",
        },
        {"name": "french", "when": 'country == "FR"', "points": 5, "enabled": False},
    ],
}


def test_custom_rules_fire_after_the_built_ins_with_their_reason():
    rs = RuleSet.build(RuleSetDocument.model_validate(DOC), version=7)
    ev, f = jewelry(400.0)
    hits = rs.evaluate(ev, f, RuleContext(rs.config))
    assert [h.rule for h in hits] == ["high_amount", "big_jewelry"]  # the disabled rule is not compiled
    assert hits[-1].points == 30
    assert hits[-1].reason == "400.00 on jewelry, more than 3x the mean of 50.00"
    ev, f = jewelry(100.0)
    assert rs.evaluate(ev, f, RuleContext(rs.config)) == []


def test_a_bad_expression_is_refused_naming_the_rule_and_position():
    bad = {"custom": [{"name": "x", "points": 5, "when": "amount > 3 and merchant_categry == 1"}]}
    with pytest.raises(ValidationError, match=r"custom\[0\] \(x\)\.when: position 16: unknown name"):
        RuleSetDocument.model_validate(bad)


@pytest.mark.parametrize(
    "custom",
    [
        [{"name": "velocity_check", "points": 5, "when": "amount > 1"}],
        [{"name": "a", "points": 5, "when": "amount > 1"}, {"name": "a", "points": 1, "when": "amount > 2"}],
        [{"name": "Bad Name", "points": 5, "when": "amount > 1"}],
        [{"name": "a", "points": 500, "when": "amount > 1"}],
    ],
)
def test_rule_names_are_unique_new_and_points_bounded(custom):
    with pytest.raises(ValidationError):
        RuleSetDocument.model_validate({"custom": custom})


def test_documents_are_canonical_and_digest_equal_content_equally():
    a = RuleSetDocument.model_validate(DOC)
    b = RuleSetDocument.model_validate(a.canonical())
    assert a == b and a.digest() == b.digest()
    assert RuleSetDocument().digest() == RuleSetDocument(rules=RulesConfig()).digest() != a.digest()


def test_every_feature_and_risk_window_is_a_variable():
    assert {"amount", "spend_ratio_24h", "hour_of_day", "country", "merchant_category"} <= VARIABLES
    RuleSetDocument.model_validate(
        {"custom": [{"name": "m", "points": 5, "when": "merchant_fraud_share_7d > 0.1"}]}
    )
