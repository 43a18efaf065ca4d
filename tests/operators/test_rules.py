from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from operators.events import Location, TransactionEvent
from operators.features import compute_features
from operators.rules import RULES, Blocklists, RuleContext, RulesConfig, evaluate_rules
from operators.state import Seen, UserState

T0 = datetime(2025, 6, 2, 12, tzinfo=UTC)
NYC = Location(40.7128, -74.0060, "US", "New York")
LONDON = Location(51.5074, -0.1278, "GB", "London")


def make(
    minutes: float = 0,
    amount: float = 20.0,
    loc: Location | None = NYC,
    device: str | None = "d1",
    user: str = "u1",
    tz: timezone = UTC,
) -> TransactionEvent:
    return TransactionEvent(
        f"e{minutes}",
        user,
        amount,
        (T0 + timedelta(minutes=minutes)).astimezone(tz),
        location=loc,
        device_id=device,
    )


def fired(
    history: list[TransactionEvent],
    e: TransactionEvent,
    config: RulesConfig | None = None,
    lists: Blocklists | None = None,
) -> dict[str, str]:
    state = UserState()
    for h in history:
        loc = h.location
        state.push(
            Seen(
                h.timestamp.timestamp(),
                h.amount,
                loc.latitude if loc else None,
                loc.longitude if loc else None,
            ),
            h.device_id,
        )
    config = config or RulesConfig()
    f = compute_features(state, e, e.timestamp.timestamp(), config.velocity_check.window_s)
    ctx = RuleContext(config, lists or Blocklists())
    return {h.rule: h.reason for h in evaluate_rules(e, f, ctx)}


def test_ordinary_purchase_fires_nothing():
    assert fired([make(-600), make(-300)], make(0)) == {}


def test_velocity_fires_above_the_limit_within_ten_minutes():
    history = [make(-9 + i) for i in range(4)]  # 4 + current = 5: not more than 5
    assert "velocity_check" not in fired(history, make(0))
    history = [make(-9 + i) for i in range(5)]  # 6 in 10 minutes
    hits = fired(history, make(0))
    assert hits["velocity_check"] == "6 transactions in 10 minutes (limit 5)"
    spread = [make(-30 + i * 5) for i in range(5)]  # same count over 30 minutes
    assert "velocity_check" not in fired(spread, make(0))


def test_velocity_threshold_comes_from_config():
    config = RulesConfig.model_validate({"velocity_check": {"max_events": 2}})
    assert "velocity_check" in fired([make(-2), make(-1)], make(0), config)


def test_velocity_window_comes_from_config():
    config = RulesConfig.model_validate({"velocity_check": {"window_s": 120}})
    burst = [make(-1.5 + i * 0.25) for i in range(5)]  # 5 + current = 6 within 90 s
    assert fired(burst, make(0), config)["velocity_check"] == "6 transactions in 2 minutes (limit 5)"
    within_ten = [make(-9 + i) for i in range(5)]  # 6 in 10 minutes, but only 2 in the last 2
    assert "velocity_check" in fired(within_ten, make(0))
    assert "velocity_check" not in fired(within_ten, make(0), config)
    hour = RulesConfig.model_validate({"velocity_check": {"window_s": 3600}})
    spread = [make(-50 + i * 10) for i in range(5)]  # 6 in 50 minutes
    assert fired(spread, make(0), hour)["velocity_check"] == "6 transactions in 1 hour (limit 5)"
    with pytest.raises(ValidationError):
        RulesConfig.model_validate({"velocity_check": {"window_s": 0}})


def test_high_amount_needs_history_and_three_times_the_mean():
    assert "high_amount" not in fired([make(-60, 10), make(-30, 10)], make(0, 500))  # 2 < min_history
    history = [make(-90, 10), make(-60, 20), make(-30, 30)]
    assert "high_amount" not in fired(history, make(0, 60))  # exactly 3x
    assert fired(history, make(0, 61))["high_amount"].startswith("amount 61.00 USD is 3.0x")


def test_impossible_travel_distance_and_time_window():
    assert "impossible_travel" in fired([make(-30, loc=NYC)], make(0, loc=LONDON))
    assert "impossible_travel" not in fired([make(-61, loc=NYC)], make(0, loc=LONDON))
    near = Location(40.75, -73.99)
    assert "impossible_travel" not in fired([make(-5, loc=NYC)], make(0, loc=near))
    assert "impossible_travel" not in fired([make(-5, loc=None)], make(0, loc=LONDON))


def test_unusual_hours_use_the_events_local_time():
    tokyo = timezone(timedelta(hours=9))  # 12:00 UTC is 21:00 in Tokyo
    assert "unusual_hours" not in fired([], make(0, tz=tokyo))
    la = timezone(timedelta(hours=-8))  # 12:00 UTC + 13h = 01:00 next day UTC = 17:00 LA
    assert "unusual_hours" not in fired([], make(13 * 60, tz=la))
    kiritimati = timezone(timedelta(hours=14))  # 12:00 UTC = 02:00 local
    assert fired([], make(0, tz=kiritimati))["unusual_hours"] == "made at 02:00 local time"
    assert "unusual_hours" not in fired([], make(3 * 60, tz=kiritimati))  # 05:00 local


def test_new_device_needs_a_known_device_and_a_large_amount():
    history = [make(-60, device="d1")]
    assert "new_device" in fired(history, make(0, 600, device="d2"))
    assert "new_device" not in fired(history, make(0, 400, device="d2"))
    assert "new_device" not in fired(history, make(0, 600, device="d1"))
    assert "new_device" not in fired([], make(0, 600, device="d2"))  # first event ever


def test_country_blacklist_from_config_and_from_redis_lists():
    pyongyang = Location(39.03, 125.76, "KP")
    assert "country_blacklist" in fired([], make(0, loc=pyongyang))
    assert "country_blacklist" not in fired([], make(0, loc=LONDON))
    assert "country_blacklist" in fired(
        [], make(0, loc=LONDON), lists=Blocklists(countries=frozenset({"GB"}))
    )


def test_device_and_user_blocklists():
    lists = Blocklists(devices=frozenset({"bad"}), users=frozenset({"u9"}))
    assert "device_blacklist" in fired([], make(0, device="bad"), lists=lists)
    assert "user_blacklist" in fired([], make(0, user="u9"), lists=lists)
    assert fired([], make(0), lists=lists) == {}


def test_disabled_rule_never_fires():
    config = RulesConfig.model_validate({"country_blacklist": {"enabled": False}})
    assert fired([], make(0, loc=Location(39.03, 125.76, "KP")), config) == {}


def test_every_rule_has_a_config_section():
    assert set(RULES) == set(RulesConfig.model_fields)


@pytest.mark.parametrize(
    "bad",
    [
        {"velocity_check": {"max_events": 0}},
        {"high_amount": {"multiplier": 0.5}},
        {"country_blacklist": {"countries": ["kp"]}},
        {"unusual_hours": {"points": 101}},
        {"velocity_chek": {}},
    ],
)
def test_invalid_rule_config_is_rejected(bad):
    with pytest.raises(ValidationError):
        RulesConfig.model_validate(bad)


def test_compromised_merchant_needs_enough_confirmed_frauds_and_share():
    import msgspec

    ev = msgspec.structs.replace(make(), merchant_id="term-7")
    base = compute_features(UserState(), ev, ev.timestamp.timestamp())
    ctx = RuleContext(RulesConfig(), Blocklists())

    def with_risk(frauds: float, events: float) -> list[str]:
        risk = {
            "merchant_frauds_7d": frauds,
            "merchant_events_7d": events,
            "merchant_fraud_share_7d": frauds / events if events else None,
        }
        return [h.rule for h in evaluate_rules(ev, msgspec.structs.replace(base, risk=risk), ctx)]

    assert "compromised_merchant" in with_risk(3, 20)
    assert "compromised_merchant" not in with_risk(1, 2)  # one fraud is not a pattern
    assert "compromised_merchant" not in with_risk(2, 1000)  # 0.2 % is background noise
    assert "compromised_merchant" not in with_risk(0, 0)
    hit = next(
        h
        for h in evaluate_rules(
            ev,
            msgspec.structs.replace(
                base, risk={"merchant_frauds_7d": 4, "merchant_events_7d": 10, "merchant_fraud_share_7d": 0.4}
            ),
            ctx,
        )
    )
    assert (
        hit.reason
        == "merchant 'term-7': 4 of 10 transactions in its 7-day risk window were confirmed fraud (40%)"
    )
