import pytest
import redis

from flows.blocklists import RedisBlocklists
from infra.stack import free_port
from operators import metrics
from operators.redis_keys import BLOCKLIST_KEYS
from operators.sinks import RiskSink
from tests.support import scored_events

pytestmark = pytest.mark.integration


def test_latest_risk_per_user_with_ttl(stack):
    url = stack.env()["REDIS_URL"]
    client = redis.Redis.from_url(url, decode_responses=True)
    client.delete(*[f"fraud:risk:user-{i}" for i in range(3)])
    part = RiskSink(url, ttl_s=600).build("r", 0, 1)
    part.write_batch(scored_events(9))
    risk = client.hgetall("fraud:risk:user-1")
    assert risk["event_id"] == "e7"  # the user's latest event
    assert set(risk) == {"score", "level", "decision", "event_id", "event_time", "updated_at"}
    assert 0 < client.ttl("fraud:risk:user-1") <= 600
    part.close()


def test_every_field_is_written_as_the_contract_says_with_non_ascii_ids(stack):
    import msgspec

    url = stack.env()["REDIS_URL"]
    client = redis.Redis.from_url(url, decode_responses=True)
    s = scored_events(1)[0]
    s = msgspec.structs.replace(s, event=msgspec.structs.replace(s.event, user_id="usér-ü", event_id="é-1"))
    client.delete("fraud:risk:usér-ü")
    part = RiskSink(url, ttl_s=600).build("r", 0, 1)
    part.write_batch([s])
    part.close()
    assert client.hgetall("fraud:risk:usér-ü") == {
        "score": repr(s.verdict.fraud_score),
        "level": s.verdict.risk_level,
        "decision": s.verdict.decision,
        "event_id": "é-1",
        "event_time": s.event.timestamp.isoformat(),
        "updated_at": s.scored_at.isoformat(),
    }


def test_a_batch_larger_than_one_script_call_writes_every_user(stack):
    from operators.sinks.redis import CHUNK

    url = stack.env()["REDIS_URL"]
    client = redis.Redis.from_url(url, decode_responses=True)
    users = 2 * CHUNK + 17
    client.delete(*[f"fraud:risk:user-{i}" for i in range(users)])
    events = scored_events(users * 2, users=users)
    part = RiskSink(url, ttl_s=600).build("r", 0, 1)
    part.write_batch(events)
    part.close()
    latest = {e.event.user_id: e.event.event_id for e in events}  # each user's second event
    pipe = client.pipeline()
    for user in latest:
        pipe.hget(f"fraud:risk:{user}", "event_id")
        pipe.ttl(f"fraud:risk:{user}")
    got = pipe.execute()
    assert len(latest) == users
    assert got[0::2] == list(latest.values()), "a user of a later chunk was not written"
    assert all(0 < ttl <= 600 for ttl in got[1::2])


def test_a_split_write_is_counted_when_finished_and_survives_a_lost_script(stack):
    from operators.sinks.fanout import Splittable

    url = stack.env()["REDIS_URL"]
    client = redis.Redis.from_url(url, decode_responses=True)
    client.delete(*[f"fraud:risk:user-{i}" for i in range(3)])
    part = RiskSink(url, ttl_s=600).build("r", 0, 1)
    assert isinstance(part, Splittable)
    part.sha = "0" * 40  # as if Redis restarted and forgot the script: EVALSHA fails
    written = metrics.SINK_RECORDS.labels("redis")._value.get()
    finish = part.begin(scored_events(9))
    assert len(part.pending) == 3  # sent, not yet read
    finish()
    assert not part.pending and metrics.SINK_RECORDS.labels("redis")._value.get() == written + 3
    assert client.hget("fraud:risk:user-1", "event_id") == "e7"
    assert part.sha != "0" * 40
    part.close()


def test_unreachable_redis_keeps_the_latest_risk_bounded_and_writes_it_later(stack):
    import redis as redis_lib

    now = {"t": 0.0}
    part = RiskSink(
        f"redis://127.0.0.1:{free_port()}/0", 60, retry_s=5.0, max_pending=2, clock=lambda: now["t"]
    ).build("r", 0, 1)
    dropped = metrics.SINK_DROPPED.labels("redis")._value.get()
    part.write_batch(scored_events(9))  # 3 users, Redis unreachable: no exception
    assert list(part.pending) == ["user-1", "user-2"]  # bounded: the least recent user dropped
    assert metrics.SINK_DROPPED.labels("redis")._value.get() == dropped + 1
    assert metrics.SINK_UNAVAILABLE.labels("redis")._value.get() == 1
    part.client = redis_lib.Redis.from_url(stack.env()["REDIS_URL"])  # Redis is back
    part.write_batch([])
    assert part.pending  # not retried before retry_s
    now["t"] = 5.0
    part.write_batch([])
    assert not part.pending and metrics.SINK_UNAVAILABLE.labels("redis")._value.get() == 0
    assert part.client.hget("fraud:risk:user-2", "event_id") == b"e8"
    part.close()


def test_blocklists_refresh_on_interval_and_survive_an_outage(stack):
    url = stack.env()["REDIS_URL"]
    client = redis.Redis.from_url(url)
    client.delete(*BLOCKLIST_KEYS.values())
    client.sadd(BLOCKLIST_KEYS["devices"], "dev-1")
    now = {"t": 0.0}
    lists = RedisBlocklists(url, refresh_s=5.0, clock=lambda: now["t"])
    assert lists.current().devices == {"dev-1"}
    client.sadd(BLOCKLIST_KEYS["users"], "u-1")
    assert lists.current().users == frozenset()  # not yet due
    now["t"] = 5.0
    assert lists.current().users == {"u-1"}
    lists._url = f"redis://127.0.0.1:{free_port()}/0"  # Redis gone
    lists._client = None
    now["t"] = 10.0
    failures = metrics.BLOCKLIST_REFRESH_FAILURES._value.get()
    assert lists.current().users == {"u-1"}  # last known lists kept
    assert metrics.BLOCKLIST_STALE._value.get() == 1
    assert metrics.BLOCKLIST_REFRESH_FAILURES._value.get() == failures + 1
    client.delete(*BLOCKLIST_KEYS.values())
