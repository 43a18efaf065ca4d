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
from collections.abc import Callable, Iterable, Iterator

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from operators import metrics
from operators.redis_keys import RISK_KEY
from operators.scoring import ScoredEvent

__all__ = ["RiskSink"]

log = logging.getLogger(__name__)


_WRITE_RISK = """
local ttl = ARGV[1]
local n = 2
for _, key in ipairs(KEYS) do
  redis.call('HSET', key, 'score', ARGV[n], 'level', ARGV[n + 1], 'decision', ARGV[n + 2],
             'event_id', ARGV[n + 3], 'event_time', ARGV[n + 4], 'updated_at', ARGV[n + 5])
  redis.call('EXPIRE', key, ttl)
  n = n + 6
end
return #KEYS
"""
"""HSET and EXPIRE of each user's latest risk (KEYS: risk keys; ARGV: the TTL, then six values per key)."""

CHUNK = 500
"""Users per script call: Redis runs one chunk while the job packs the next."""


class _Partition(StatelessSinkPartition[ScoredEvent]):
    def __init__(
        self, url: str, ttl_s: int, retry_s: float, max_pending: int, clock: Callable[[], float]
    ) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=0.5)
        self.ttl_s, self.retry_s, self.max_pending, self.clock = ttl_s, retry_s, max_pending, clock
        self.pending: OrderedDict[str, ScoredEvent] = OrderedDict()
        self.next_try = 0.0
        self.down_since: float | None = None
        self.sha: str | None = None

    def _write(self) -> None:
        """Every pending user through EVALSHA: HSET + EXPIRE per user run by a
        server-side script, so a chunk of users costs one command to pack and one
        reply to read (redis-py's per-command packing and per-reply parsing were
        most of this sink's time in a profile). Chunks of :data:`CHUNK` users are
        sent one after another and their replies read at the end, so Redis runs
        one chunk while the next is packed."""
        if not self.pending:
            return
        if self.sha is None:
            self.sha = self.client.script_load(_WRITE_RISK)
        try:
            self._evalsha(self.sha, self._commands())
        except redis.exceptions.NoScriptError:  # Redis restarted: load the script again
            self.sha = self.client.script_load(_WRITE_RISK)
            self._evalsha(self.sha, self._commands())

    def _commands(self) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """(keys, args) of the script per chunk of pending users."""
        items = list(self.pending.items())
        ttl = str(self.ttl_s).encode()
        for start in range(0, len(items), CHUNK):
            keys: list[bytes] = []
            args: list[bytes] = [ttl]
            for user_id, s in items[start : start + CHUNK]:
                keys.append(RISK_KEY.format(user_id=user_id).encode())
                v = s.verdict
                args += (
                    repr(v.fraud_score).encode(),
                    v.risk_level.encode(),
                    v.decision.encode(),
                    s.event.event_id.encode(),
                    s.event.timestamp.isoformat().encode(),
                    s.scored_at.isoformat().encode(),
                )
            yield keys, args

    def _evalsha(self, sha: str, commands: Iterable[tuple[list[bytes], list[bytes]]]) -> None:
        """EVALSHA per chunk, packed by hand (redis-py's generic packing is slow for
        thousands of args), each sent as soon as it is built, the replies read last."""
        conn = self.client.connection_pool.get_connection()
        sent = 0
        try:
            for keys, args in commands:
                parts = [b"EVALSHA", sha.encode(), str(len(keys)).encode(), *keys, *args]
                packed = b"*%d\r\n" % len(parts) + b"".join([b"$%d\r\n%s\r\n" % (len(p), p) for p in parts])
                conn.send_packed_command([packed])
                sent += 1
            replies = [conn.read_response() for _ in range(sent)]
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self.client.connection_pool.release(conn)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

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
