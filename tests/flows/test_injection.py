import json
from collections import Counter

import pytest

from flows.injection import SCENARIOS, InjectionConfig, inject
from flows.workload import generate_trips
from operators.events import TransactionEvent, decode_event
from operators.riders import RiderModel, trip_to_event

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


def test_unknown_scenarios_and_bad_rates_are_refused():
    with pytest.raises(ValueError, match="unknown scenarios"):
        InjectionConfig(rates={"bogus": 0.1})
    with pytest.raises(ValueError, match="within"):
        InjectionConfig(rates={"night_run": 2})
