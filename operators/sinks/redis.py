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

from operators import kernels, metrics
from operators.redis_keys import RISK_KEY
from operators.scoring import ScoredEvent

__all__ = ["RiskSink", "risk_commands"]

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


def _bulk(value: bytes) -> bytes:
    """``value`` as a RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


_KEY_PREFIX = RISK_KEY.format(user_id="").encode()
_LEVELS = {level: _bulk(level.encode()) for level in ("LOW", "MEDIUM", "HIGH")}
_DECISIONS = {decision: _bulk(decision.encode()) for decision in ("approve", "review", "block")}


def risk_commands(items: list[tuple[str, ScoredEvent]], ttl: bytes) -> Iterator[tuple[int, bytes]]:
    """(number of keys, the script's KEYS and ARGV as RESP bulk strings) per chunk of
    :data:`CHUNK` users, packed as they are built; ``updated_at`` formatted once per
    scoring batch (a batch's verdicts share ``scored_at``). ``ttl``: the TTL as a bulk
    string. The reference of ``operators.kernels.risk.risk_commands``."""
    scored_at, updated = None, b""
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        keys: list[bytes] = []
        args: list[bytes] = [ttl]
        for user_id, s in chunk:
            key = _KEY_PREFIX + user_id.encode()
            keys.append(b"$%d\r\n%b\r\n" % (len(key), key))
            if s.scored_at is not scored_at:
                scored_at = s.scored_at
                updated = _bulk(scored_at.isoformat().encode())
            v = s.verdict
            score = repr(v.fraud_score).encode()
            event_id = s.event.event_id.encode()
            event_time = s.event.timestamp.isoformat().encode()
            # the six values as bulk strings in one formatting (six calls of _bulk cost twice this)
            args.append(
                b"$%d\r\n%b\r\n%b%b$%d\r\n%b\r\n$%d\r\n%b\r\n%b"
                % (
                    len(score),
                    score,
                    _LEVELS.get(v.risk_level) or _bulk(v.risk_level.encode()),
                    _DECISIONS.get(v.decision) or _bulk(v.decision.encode()),
                    len(event_id),
                    event_id,
                    len(event_time),
                    event_time,
                    updated,
                )
            )
        yield len(keys), b"".join(keys) + b"".join(args)


def _done() -> None:
    return None


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

    def _send(self) -> Callable[[], None]:
        """Every pending user through EVALSHA: HSET + EXPIRE per user run by a
        server-side script, so a chunk of users costs one command to pack and one
        reply to read (redis-py's per-command packing and per-reply parsing were
        most of this sink's time in a profile). Chunks of :data:`CHUNK` users are
        sent one after another; the returned call reads their replies (sending again,
        whole, if Redis restarted and lost the script), so Redis runs the chunks
        while the caller does something else."""
        if self.sha is None:
            self.sha = self.client.script_load(_WRITE_RISK)
        read = self._evalsha(self.sha, self._commands())

        def finish() -> None:
            try:
                read()
            except redis.exceptions.NoScriptError:  # Redis restarted: load the script again
                self.sha = self.client.script_load(_WRITE_RISK)
                self._evalsha(self.sha, self._commands())()

        return finish

    def _commands(self) -> Iterable[tuple[int, bytes]]:
        """The script calls for every pending user (:func:`risk_commands`, compiled where built)."""
        items = list(self.pending.items())
        ttl = _bulk(str(self.ttl_s).encode())
        if kernels.risk is not None:
            return kernels.risk.risk_commands(items, _KEY_PREFIX, ttl, CHUNK, _LEVELS, _DECISIONS)
        return risk_commands(items, ttl)

    def _evalsha(self, sha: str, commands: Iterable[tuple[int, bytes]]) -> Callable[[], None]:
        """EVALSHA per chunk, packed by hand (redis-py's generic packing is slow for
        thousands of args), each sent as soon as it is built; the returned call reads
        the replies (the connection is held until then)."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        sent = 0
        head = b"$7\r\nEVALSHA\r\n" + _bulk(sha.encode())
        try:
            for n_keys, packed in commands:
                count = _bulk(str(n_keys).encode())
                conn.send_packed_command([b"*%d\r\n" % (3 + n_keys * 7 + 1) + head + count + packed])
                sent += 1
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise

        def read() -> None:
            try:
                replies = [conn.read_response() for _ in range(sent)]
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply

        return read

    def write_batch(self, items: list[ScoredEvent]) -> None:
        self.begin(items)()

    def begin(self, items: list[ScoredEvent]) -> Callable[[], None]:
        """Note ``items`` as each user's latest risk and send every pending user to Redis;
        the returned call reads the replies and counts them (or, when Redis cannot be
        written, keeps them pending, tried again after ``retry_s``). A split write
        (:class:`~operators.sinks.fanout.Fanout`): Redis runs the scripts while the job
        produces the decisions, where it used to wait for them (7.8% of a worker's wall
        time, ``bench job``, one process, py-spy ``--idle``)."""
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
        if now < self.next_try or not self.pending:
            return _done
        try:
            reading = self._send()
        except redis.RedisError as exc:
            self._unavailable(now, exc)
            return _done
        started_s = time.perf_counter() - began

        def finish() -> None:
            resumed = time.perf_counter()
            try:
                reading()
            except redis.RedisError as exc:
                self._unavailable(now, exc)
                return
            if self.down_since is not None:
                log.info("redis: writing again after %.1f s", now - self.down_since)
                self.down_since = None
            metrics.SINK_UNAVAILABLE.labels("redis").set(0)
            metrics.SINK_RECORDS.labels("redis").inc(len(self.pending))
            self.pending.clear()
            metrics.STAGE_SECONDS.labels("sink_redis").observe(started_s + time.perf_counter() - resumed)

        return finish

    def _unavailable(self, now: float, exc: redis.RedisError) -> None:
        """Redis could not be written: count it, keep the pending users, try after ``retry_s``."""
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
