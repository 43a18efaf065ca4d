"""Live block and allow lists read from Redis sets, refreshed on an interval (the job reads
them per batch; the gateway's fallback too).

If Redis cannot be read, scoring carries on with the last known lists
(fail-open for scoring) and ``fraudstream_blocklist_stale`` goes to 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from operators import metrics
from operators.redis_keys import LIST_KEYS
from operators.refresh import Throttle
from operators.rules import Blocklists

__all__ = ["RedisBlocklists"]

log = logging.getLogger(__name__)


class RedisBlocklists:
    """Returns the current :class:`Blocklists`, re-reading Redis at most every ``refresh_s``."""

    def __init__(self, url: str, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._url = url
        self._throttle = Throttle(refresh_s, clock)
        self._client: redis.Redis | None = None
        self._lists = Blocklists()
        self._stale = False

    def current(self) -> Blocklists:
        if self._throttle.due():
            self._refresh()
        return self._lists

    def _refresh(self) -> None:
        try:
            if self._client is None:
                self._client = redis.Redis.from_url(self._url, socket_timeout=2.0, socket_connect_timeout=2.0)
            pipe = self._client.pipeline(transaction=False)
            for key in LIST_KEYS.values():
                pipe.smembers(key)
            lists = {
                name: frozenset(v.decode() for v in members)
                for name, members in zip(LIST_KEYS, pipe.execute(), strict=True)
            }
        except redis.RedisError as exc:
            metrics.BLOCKLIST_REFRESH_FAILURES.inc()
            if not self._stale:
                log.warning(
                    "blocklists: cannot read Redis (%s); keeping the last known lists", type(exc).__name__
                )
            self._stale = True
            metrics.BLOCKLIST_STALE.set(1)
            return
        if self._stale:
            log.info("blocklists: Redis readable again")
        self._stale = False
        metrics.BLOCKLIST_STALE.set(0)
        self._lists = Blocklists(**lists)
        for name, members in lists.items():
            metrics.BLOCKLIST_SIZE.labels(name).set(len(members))
