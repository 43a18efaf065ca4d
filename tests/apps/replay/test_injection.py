import json
from collections import Counter

import pytest

from apps.replay.injection import COMPROMISED, DAY, SCENARIOS, InjectionConfig, compromised, inject
from apps.replay.riders import RiderModel, trip_to_event
from apps.replay.workload import generate_trips
from operators.events import TransactionEvent, decode_event

N = 40_000


@pytest.fixture(scope="module")
def base():
    return [trip_to_event(t, RiderModel(1, 3000)) for t in generate_trips(N, seed=1)]


def instances(out):
    """Injected instances per scenario (a card-testing burst is one instance)."""
    seeds = Counter()
    for ev, label in out:
        if label:
            seeds[(label, ev["event_id"].split("-ct")[0])] += 1
    return Counter(label for label, _ in seeds)


def test_every_scenario_is_injected_at_its_rate(base):
    rates = {s: r for s, r in zip(SCENARIOS, (0.005, 0.01, 0.002, 0.004, 0.003, 0.006, 0.001), strict=True)}
    out = list(inject(base, InjectionConfig(seed=5, rates=rates)))
    got = instances(out)
    for name, rate in rates.items():
        expected, sd = N * rate, (N * rate * (1 - rate)) ** 0.5
        assert abs(got[name] - expected) < 4 * sd, (name, got[name], expected)


def test_same_seed_same_injection_and_labels_stay_outside_events(base):
    cfg = InjectionConfig(seed=3, rates=dict.fromkeys(SCENARIOS, 0.01))
    a, b = list(inject(base[:5000], cfg)), list(inject(base[:5000], cfg))
    assert a == b
    other = list(inject(base[:5000], InjectionConfig(seed=4, rates=dict.fromkeys(SCENARIOS, 0.01))))
    assert [lab for _, lab in a] != [lab for _, lab in other]
    for ev, _ in a:
        assert "label" not in json.dumps(ev) and "scenario" not in json.dumps(ev)
        assert isinstance(decode_event(json.dumps(ev).encode()), TransactionEvent)


def test_scenarios_have_their_shape(base):
    out = list(inject(base[:20000], InjectionConfig(seed=1, rates=dict.fromkeys(SCENARIOS, 0.01))))
    by_label = {}
    for ev, label in out:
        by_label.setdefault(label, []).append(ev)
    bursts = Counter(e["event_id"].split("-ct")[0] for e in by_label["card_testing"])
    assert set(bursts.values()) == {7} and all(e["amount"] <= 3 for e in by_label["card_testing"])
    assert all(e["location"]["country"] in {"KP", "IR", "SY"} for e in by_label["blocked_country"])
    assert all(e["amount"] >= 600 and "-ato" in e["device_id"] for e in by_label["account_takeover"])
    assert all(2 <= int(e["timestamp"][11:13]) < 4 for e in by_label["night_run"])
    rewritten = {e["event_id"] for e in by_label["fare_manipulation"] + by_label["spending_spike"]}
    assert all(not eid.endswith(("-cc", "-bc")) for eid in rewritten)  # rewrites keep the trip's id
    assert len({e["event_id"] for e, _ in out}) == len(out)


def terminal_events(terminals=60, days=336, per_day=2):
    """``per_day`` events a day at each terminal, over ``days`` days."""
    from datetime import UTC, datetime

    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    return [
        {
            "event_id": f"e-{t}-{d}-{k}",
            "user_id": f"u{(t * 7 + d + k) % 500}",
            "amount": 20.0,
            "timestamp": datetime.fromtimestamp(start + d * DAY + 3600 * (8 + 5 * k), UTC).isoformat(),
            "merchant_id": f"term-{t:05d}",
        }
        for d in range(days)
        for t in range(terminals)
        for k in range(per_day)
    ]


def test_compromised_terminals_turn_whole_periods_to_unchanged_fraud():
    events = terminal_events()
    cfg = InjectionConfig(
        seed=2, rates=dict.fromkeys(SCENARIOS, 0.0), compromise_rate=0.05, compromise_days=28
    )
    out = list(inject(events, cfg))
    assert [e for e, _ in out] == events  # nothing rewritten or added: the fraud looks normal
    fraud = [e for e, label in out if label == COMPROMISED]
    assert {label for _, label in out} == {None, COMPROMISED}
    share = len(fraud) / len(events)
    assert 0.02 < share < 0.09, share  # about compromise_rate of the trips
    # a compromise lasts a whole period: per terminal, fraud days come in runs of 28 (ends cut by the span)
    from datetime import datetime

    days = {}
    for e in fraud:
        days.setdefault(e["merchant_id"], set()).add(
            datetime.fromisoformat(e["timestamp"]).timestamp() // DAY
        )
    first, last = min(min(d) for d in days.values()), max(max(d) for d in days.values())
    inner = []  # runs of consecutive fraud days that the replayed span does not cut
    for d in days.values():
        ordered = sorted(d)
        begin = prev = ordered[0]
        for day in [*ordered[1:], None]:
            if day is not None and day == prev + 1:
                prev = day
                continue
            if begin > first and prev < last:
                inner.append(prev - begin + 1)
            if day is not None:
                begin = prev = day
    assert inner and all(r >= 27 for r in inner), inner
    # order-free and seeded
    assert list(inject(events[::-1], cfg))[::-1] == out
    other = list(inject(events, InjectionConfig(seed=3, rates=cfg.rates, compromise_rate=0.05)))
    assert [lab for _, lab in other] != [lab for _, lab in out]
    assert compromised("term-00001", 0.0, InjectionConfig()) is False  # off by default


def test_events_without_a_terminal_are_never_compromised(base):
    cfg = InjectionConfig(seed=1, rates=dict.fromkeys(SCENARIOS, 0.0), compromise_rate=1.0)
    assert all(label is None for _, label in inject(base[:2000], cfg))


def test_unknown_scenarios_and_bad_rates_are_refused():
    with pytest.raises(ValueError, match="unknown scenarios"):
        InjectionConfig(rates={"bogus": 0.1})
    with pytest.raises(ValueError, match="within"):
        InjectionConfig(rates={"night_run": 2})
    with pytest.raises(ValueError, match="compromise_rate"):
        InjectionConfig(compromise_rate=-0.1)
    with pytest.raises(ValueError, match="compromise_days"):
        InjectionConfig(compromise_days=0)
