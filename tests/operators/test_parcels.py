"""A parcel crosses to another process as msgpack and arrives equal to what was sent;
what msgpack cannot carry exactly crosses as a plain list."""

import json
import pickle
import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.entity_risk import RiskConfig
from operators.events import TransactionEvent, decode_event
from operators.parcels import AcceptedParcel, FeaturedParcel
from operators.shards import UserShard, UserShardConfig
from operators.validation import Accepted
from tests.fuzz_corpus import corpus, valid_event

NOW = datetime(2025, 6, 3, tzinfo=UTC)


def _accepted(payloads: list[bytes]) -> list[Accepted]:
    out = []
    for i, raw in enumerate(payloads):
        ev = decode_event(raw, now=NOW)
        if isinstance(ev, TransactionEvent):
            ts = ev.timestamp.timestamp()
            out.append(Accepted(ev, ts, 1_000 + i, ts + 0.5, bytes(32), f"r{i}", ("transactions", 3, i)))
    return out


def _cross(parcel: list) -> tuple[list, bytes]:
    data = pickle.dumps(parcel)
    return pickle.loads(data), data


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_accepted_and_featured_parcels_arrive_equal_to_what_was_sent(seed):
    accepted = _accepted([raw for _, raw in corpus(seed, 80)])
    utc = [a for a in accepted if a.event.timestamp.tzinfo is UTC]
    assert utc
    back, data = _cross(AcceptedParcel(utc))
    assert type(back) is list and back == utc
    assert b"_accepted" in data, "crossed as msgpack"
    featured, _ = UserShard().process(utc, [], NOW.timestamp(), UserShardConfig(risk=RiskConfig()))
    back, data = _cross(FeaturedParcel(featured))
    assert back == featured and b"_featured" in data
    assert [f.features for f in back] == [f.features for f in featured]


def test_a_parcel_is_encoded_once_for_both_of_bytewaxs_pickles():
    parcel = AcceptedParcel(_accepted([json.dumps(valid_event(random.Random(1), 1)).encode()]))
    first = pickle.dumps(parcel)
    packed = parcel._packed
    assert pickle.dumps(parcel) == first and parcel._packed is packed


def test_an_offset_other_than_utc_crosses_as_a_plain_list_and_keeps_its_offset():
    ev = {"event_id": "e1", "user_id": "u1", "amount": 12.5, "timestamp": "2025-06-02T12:00:00+05:30"}
    accepted = _accepted([json.dumps(ev).encode()])
    assert accepted[0].event.timestamp.utcoffset() == timedelta(hours=5, minutes=30)
    back, data = _cross(AcceptedParcel(accepted))
    assert back == accepted and b"_accepted" not in data
    assert back[0].event.timestamp.utcoffset() == timedelta(hours=5, minutes=30)
    assert back[0].event.timestamp.isoformat() == "2025-06-02T12:00:00+05:30"
