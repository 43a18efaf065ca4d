from collections import Counter

from apps.replay.riders import RiderModel, trip_to_event
from apps.replay.workload import generate_trips
from operators.events import TransactionEvent, decode_event


def test_same_seed_same_riders_and_devices_whatever_the_order():
    trips = generate_trips(3000, seed=4)
    a = [trip_to_event(t, RiderModel(seed=9, riders=500)) for t in trips]
    b = [trip_to_event(t, RiderModel(seed=9, riders=500)) for t in reversed(trips)][::-1]
    assert [(e["user_id"], e["device_id"]) for e in a] == [(e["user_id"], e["device_id"]) for e in b]
    c = [trip_to_event(t, RiderModel(seed=10, riders=500)) for t in trips]
    assert [e["user_id"] for e in a] != [e["user_id"] for e in c]


def test_repeat_riders_follow_a_long_tail():
    model = RiderModel(seed=1, riders=10_000)
    counts = Counter(model.rider(f"k{i}") for i in range(50_000))
    top = counts.most_common(1)[0][1]
    assert 200 < top < 1500  # busiest rider: ~1/sqrt(rank) head
    assert sum(1 for v in counts.values() if v == 1) > 500  # and many occasional riders
    devices = Counter(model.device(r, f"x{i}") for i, r in enumerate(list(counts)[:2000]))
    assert {d.rsplit("-", 1)[1] for d in devices} == {"dev0", "dev1"}


def test_trip_events_follow_the_contract():
    trip = generate_trips(1, seed=2)[0]
    ev = trip_to_event(trip, RiderModel())
    decoded = decode_event(__import__("json").dumps(ev).encode())
    assert isinstance(decoded, TransactionEvent)
    assert decoded.amount == round(trip.total_amount, 2) and decoded.merchant_category == "taxi"
    assert decoded.timestamp == trip.dropoff
    assert decoded.timestamp.utcoffset() is not None and decoded.location is not None
    assert {
        "trip_distance",
        "duration_minutes",
        "passenger_count",
        "payment_type",
        "fare_amount",
        "tip_amount",
        "pickup_zone",
    } <= set(decoded.attributes)


def test_terminals_are_assigned_deterministically_when_asked():
    trips = generate_trips(2000, seed=4)
    assert all("merchant_id" not in trip_to_event(t, RiderModel(seed=9)) for t in trips[:50])
    model = RiderModel(seed=9, riders=500, terminals=40)
    a = [trip_to_event(t, model)["merchant_id"] for t in trips]
    assert a == [trip_to_event(t, model)["merchant_id"] for t in trips]
    counts = Counter(a)
    assert set(counts) <= {f"term-{k:05d}" for k in range(40)} and len(counts) == 40
    assert max(counts.values()) < 3 * min(counts.values())  # uniform, not a long tail
    assert a != [
        trip_to_event(t, RiderModel(seed=10, riders=500, terminals=40))["merchant_id"] for t in trips
    ]
