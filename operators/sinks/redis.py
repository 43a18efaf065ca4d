"""Redis sink: the latest risk of each user in ``fraud:risk:<user_id>`` with a TTL.

The risk hash is a cache the job can always rewrite, so a Redis outage must not
stop scoring: when Redis cannot be written, each user's latest verdict waits in
a bounded map (the newest verdict replaces older ones) and is written when
Redis answers again, tried at most every ``retry_s``. If more than
``max_pending`` users wait, the least recently updated are dropped and counted
(``fraudstream_sink_dropped_total{sink="redis"}``): their next event rewrites them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from operators import metrics
from operators.scoring import ScoredEvent

__all__ = ["RISK_KEY", "RiskSink"]

log = logging.getLogger(__name__)
RISK_KEY = "fraud:risk:{user_id}"


class _Partition(StatelessSinkPartition[ScoredEvent]):
    def __init__(
        self, url: str, ttl_s: int, retry_s: float, max_pending: int, clock: Callable[[], float]
    ) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=0.5)
        self.ttl_s, self.retry_s, self.max_pending, self.clock = ttl_s, retry_s, max_pending, clock
        self.pending: OrderedDict[str, ScoredEvent] = OrderedDict()
        self.next_try = 0.0
        self.down_since: float | None = None

    def _write(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for user_id, s in self.pending.items():
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
        for s in items:
            prev = self.pending.get(s.event.user_id)
            if prev is None or s.event.timestamp >= prev.event.timestamp:
                self.pending[s.event.user_id] = s
                self.pending.move_to_end(s.event.user_id)
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
            metrics.SINK_DROPPED.labels("redis").inc()
        now = self.clock()
        if now < self.next_try:
            return
        try:
            self._write()
        except redis.RedisError as exc:
            metrics.SINK_RETRIES.labels("redis").inc()
            metrics.SINK_UNAVAILABLE.labels("redis").set(1)
            if self.down_since is None:
                self.down_since = now
                log.warning(
                    "redis: cannot write risk (%s); keeping the latest risk of %d users until it answers",
                    type(exc).__name__,
                    len(self.pending),
                )
            self.next_try = now + self.retry_s
            return
        if self.down_since is not None:
            log.info("redis: writing again after %.1f s", now - self.down_since)
            self.down_since = None
        metrics.SINK_UNAVAILABLE.labels("redis").set(0)
        metrics.SINK_RECORDS.labels("redis").inc(len(self.pending))
        self.pending.clear()
        metrics.STAGE_SECONDS.labels("sink_redis").observe(time.perf_counter() - began)

    def close(self) -> None:
        self.client.close()


class RiskSink(DynamicSink[ScoredEvent]):
    def __init__(
        self,
        url: str,
        ttl_s: int,
        retry_s: float = 1.0,
        max_pending: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.ttl_s, self.retry_s, self.max_pending, self.clock = (
            url,
            ttl_s,
            retry_s,
            max_pending,
            clock,
        )

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.url, self.ttl_s, self.retry_s, self.max_pending, self.clock)
