"""The compiled ``decide_batch`` against :func:`operators.scoring.decide_batch`: the same
hits, reasons and verdicts for any features, model scores, rule settings, blocklists and
allow lists, both ensemble profiles, a challenger and a shadow rule set."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.ensemble import EnsembleConfig
from operators.events import Location, TransactionEvent
from operators.features import Featured, Features, compute_features
from operators.rules import Blocklists
from operators.rulesets import RuleSet, RuleSetDocument
from operators.scoring import decide_batch
from operators.state import UserState
from operators.validation import Accepted
from tests.operators.kernels.conftest import compiled

_maybe = st.one_of(st.none(), st.floats(0, 5_000, allow_nan=False))
_share = st.one_of(st.none(), st.floats(0, 1, allow_nan=False))
_features = st.builds(
    Features,
    amount=st.floats(0, 20_000, allow_nan=False),
    hour_of_day=st.integers(0, 23),
    day_of_week=st.integers(0, 6),
    days_since_last_event=_maybe,
    amount_mean_10=_maybe,
    amount_std_10=_maybe,
    events_10m=st.integers(1, 12),
    events_1h=st.integers(1, 12),
    events_24h=st.integers(1, 12),
    velocity_events=st.integers(1, 12),
    distance_km=_maybe,
    seconds_since_last_location=st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),
    speed_kmh=_maybe,
    amount_zscore=_maybe,
    user_mean_amount=st.one_of(st.none(), st.just(0.0), st.floats(0, 3_000, allow_nan=False)),
    user_event_count=st.integers(0, 10),
    device_known=st.sampled_from([None, True, False]),
    known_devices=st.integers(0, 3),
    spend_24h=st.floats(0, 50_000, allow_nan=False),
    spend_ratio_24h=_maybe,
    amount_rank=_share,
    hour_share=_share,
    large_48h=st.integers(0, 5),
    odd_hour_48h=st.integers(0, 5),
    risk=st.fixed_dictionaries(
        {},
        optional={
            "merchant_frauds_7d": st.integers(0, 6),
            "merchant_fraud_share_7d": _share,
            "merchant_events_7d": st.integers(0, 60),
        },
    ),
)


@st.composite
def _featured(draw: st.DrawFn, i: int) -> Featured:
    f = draw(_features)
    country = draw(st.sampled_from([None, "US", "KP", "FR"]))
    ev = TransactionEvent(
        f"e{i}",
        draw(st.sampled_from(["u1", "u2", "bad-user", "vip"])),
        f.amount,
        datetime(2025, 6, 2, f.hour_of_day, tzinfo=UTC),
        location=Location(40.0, -74.0, country) if country or draw(st.booleans()) else None,
        device_id=draw(st.sampled_from([None, "", "d1", "bad-device", "trusted"])),
        merchant_id=draw(st.sampled_from([None, "m1"])),
        merchant_name="shop",
    )
    acc = Accepted(ev, ev.timestamp.timestamp(), draw(st.one_of(st.none(), st.just(1_700_000_000_000))), 5.0)
    return Featured(acc, f)


_rules = st.fixed_dictionaries(
    {
        "velocity_check": st.fixed_dictionaries({"enabled": st.booleans(), "max_events": st.integers(1, 8)}),
        "high_amount": st.fixed_dictionaries(
            {"multiplier": st.floats(1.5, 4), "min_history": st.integers(1, 5)}
        ),
        "impossible_travel": st.fixed_dictionaries(
            {"max_km": st.floats(10, 900), "within_s": st.floats(60, 9000)}
        ),
        "unusual_hours": st.fixed_dictionaries(
            {"start_hour": st.integers(0, 5), "end_hour": st.integers(6, 24)}
        ),
        "new_device": st.fixed_dictionaries({"enabled": st.booleans(), "min_amount": st.floats(0, 900)}),
        "country_blacklist": st.fixed_dictionaries({"countries": st.sampled_from([["KP"], ["FR", "IR"]])}),
        "compromised_merchant": st.fixed_dictionaries({"min_frauds": st.integers(1, 3)}),
    }
)
_custom = st.sampled_from(
    [
        [],
        [{"name": "big", "points": 30, "when": "amount > 1000", "reason": "{amount} is big"}],
        [{"name": "blocker", "points": 5, "when": "velocity_events > 3", "force_high": True}],
    ]
)
_blocklists = st.builds(
    Blocklists,
    countries=st.sampled_from([frozenset(), frozenset({"FR"})]),
    devices=st.sampled_from([frozenset(), frozenset({"bad-device"})]),
    users=st.sampled_from([frozenset(), frozenset({"bad-user"})]),
    allowed_users=st.sampled_from([frozenset(), frozenset({"vip"})]),
    allowed_devices=st.sampled_from([frozenset(), frozenset({"trusted"})]),
)
_score = st.one_of(st.floats(0, 100, allow_nan=False), st.just(100.0), st.just(0.0))


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 12),
    rules=_rules,
    custom=_custom,
    blocklists=_blocklists,
    profile=st.sampled_from(["evidence", "weighted"]),
    components=st.sampled_from([(), ("isolation_forest", "autoencoder"), ("isolation_forest", "supervised")]),
    with_challenger=st.booleans(),
    with_shadow=st.sampled_from([None, 4]),
)
def test_any_batch_gives_the_reference_verdicts(
    data, n, rules, custom, blocklists, profile, components, with_challenger, with_shadow
):
    kernel = compiled("verdicts")
    batch = [data.draw(_featured(i)) for i in range(n)]
    ruleset = RuleSet.build(RuleSetDocument.model_validate({"rules": rules, "custom": custom}), version=3)
    shadow = RuleSet.build(RuleSetDocument(), version=with_shadow) if with_shadow is not None else None
    ensemble = EnsembleConfig(profile=profile)
    scores = {name: data.draw(st.lists(_score, min_size=n, max_size=n)) for name in components}
    challenger = (
        ("v2", {name: data.draw(st.lists(_score, min_size=n, max_size=n)) for name in components})
        if with_challenger
        else None
    )
    args = (batch, scores, "v1", ruleset, blocklists, ensemble, 1_750_000_000.0, challenger, shadow)
    assert kernel.decide_batch(*args) == decide_batch(*args)


def test_a_shadow_set_without_a_version_is_not_scored_as_in_the_reference():
    kernel = compiled("verdicts")
    ev = TransactionEvent("e", "u", 10.0, datetime(2025, 6, 2, 3, tzinfo=UTC))
    f = Featured(Accepted(ev, ev.timestamp.timestamp(), None, 0.0), compute_features(UserState(), ev, 0.0))
    args = (
        [f],
        {},
        "v1",
        RuleSet.from_config(RuleSetDocument().rules),
        Blocklists(),
        EnsembleConfig(),
        0.0,
        None,
    )
    unversioned = RuleSet.from_config(RuleSetDocument().rules)
    assert kernel.decide_batch(*args, unversioned) == decide_batch(*args, unversioned)
    assert kernel.decide_batch(*args, unversioned)[0].shadow_rules is None


_TIES = st.integers(-(10**6), 10**6).map(lambda k: (k + 0.5) / 1000)  # exact and near ties


@settings(max_examples=2000, deadline=None)
@given(
    x=st.floats(allow_nan=False)
    | st.floats(0, 100)
    | st.floats(0, 10_000)
    | _TIES
    | _TIES.map(lambda t: math.nextafter(t, math.inf))
    | _TIES.map(lambda t: math.nextafter(t, -math.inf)),
    ndigits=st.integers(0, 3),
)
def test_the_kernels_rounding_is_pythons_bit_for_bit(x, ndigits):
    """The scores and processing times are rounded without CPython's decimal round trip
    where that is safe: the same double, ties, signed zeros and huge values included."""
    got = compiled("verdicts").rounded(x, ndigits)
    assert struct.pack("<d", got) == struct.pack("<d", round(x, ndigits))
