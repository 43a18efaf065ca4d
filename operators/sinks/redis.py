"""Redis sink: the latest risk of each user in ``fraud:risk:<user_id>`` with a TTL."""

from __future__ import annotations

import time

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from operators import metrics
from operators.scoring import ScoredEvent
from operators.sinks.retry import RetryPolicy, retrying

__all__ = ["RISK_KEY", "RiskSink"]

RISK_KEY = "fraud:risk:{user_id}"


class _Partition(StatelessSinkPartition[ScoredEvent]):
    def __init__(self, url: str, ttl_s: int, policy: RetryPolicy) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.ttl_s, self.policy = ttl_s, policy

    def _write(self, latest: dict[str, ScoredEvent]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for user_id, s in latest.items():
            key = RISK_KEY.format(user_id=user_id)
            pipe.hset(
                key,
                mapping={
                    "score": s.verdict.fraud_score,
                    "level": s.verdict.risk_level,
                    "decision": s.verdict.decision,
                    "event_id": s.event.event_id,
                    "event_time": s.event.timestamp.isoformat(),
                    "updated_at": s.scored_at.isoformat(),
                },
            )
            pipe.expire(key, self.ttl_s)
        pipe.execute()

    def write_batch(self, items: list[ScoredEvent]) -> None:
        began = time.perf_counter()
        latest: dict[str, ScoredEvent] = {}
        for s in items:
            prev = latest.get(s.event.user_id)
            if prev is None or s.event.timestamp >= prev.event.timestamp:
                latest[s.event.user_id] = s
        retrying("redis", self.policy, lambda: self._write(latest), (redis.RedisError,))
        metrics.SINK_RECORDS.labels("redis").inc(len(latest))
        metrics.STAGE_SECONDS.labels("sink_redis").observe(time.perf_counter() - began)

    def close(self) -> None:
        self.client.close()


class RiskSink(DynamicSink[ScoredEvent]):
    def __init__(self, url: str, ttl_s: int, policy: RetryPolicy | None = None) -> None:
        self.url, self.ttl_s = url, ttl_s
        self.policy = policy or RetryPolicy()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.url, self.ttl_s, self.policy)
