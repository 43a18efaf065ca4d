import pytest
import redis

from infra.stack import free_port
from operators import metrics
from operators.blocklists import BLOCKLIST_KEYS, RedisBlocklists
from operators.sinks import RiskSink, SinkError
from operators.sinks.retry import RetryPolicy
from tests.operators.sinks.helpers import scored_events

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


def test_unreachable_redis_raises_after_retries():
    part = RiskSink(
        f"redis://127.0.0.1:{free_port()}/0",
        60,
        RetryPolicy(max_retries=1, backoff_s=0.01, sleep=lambda _: None),
    ).build("r", 0, 1)
    with pytest.raises(SinkError, match="redis: giving up after 2 attempts"):
        part.write_batch(scored_events(2))


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
