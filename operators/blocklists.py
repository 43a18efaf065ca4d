"""Live blocklists read from Redis sets, refreshed on an interval.

If Redis cannot be read, scoring carries on with the last known lists
(fail-open for scoring) and ``fraudstream_blocklist_stale`` goes to 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from operators import metrics
from operators.rules import Blocklists

__all__ = ["BLOCKLIST_KEYS", "RedisBlocklists"]

log = logging.getLogger(__name__)

BLOCKLIST_KEYS = {
    "countries": "fraud:blocklist:countries",
    "devices": "fraud:blocklist:devices",
    "users": "fraud:blocklist:users",
}


class RedisBlocklists:
    """Returns the current :class:`Blocklists`, re-reading Redis at most every ``refresh_s``."""

    def __init__(self, url: str, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._url = url
        self._refresh_s = refresh_s
        self._clock = clock
        self._client: redis.Redis | None = None
        self._lists = Blocklists()
        self._next = 0.0
        self._stale = False

    def current(self) -> Blocklists:
        now = self._clock()
        if now >= self._next:
            self._next = now + self._refresh_s
            self._refresh()
        return self._lists

    def _refresh(self) -> None:
        try:
            if self._client is None:
                self._client = redis.Redis.from_url(self._url, socket_timeout=2.0, socket_connect_timeout=2.0)
            pipe = self._client.pipeline(transaction=False)
            for key in BLOCKLIST_KEYS.values():
                pipe.smembers(key)
            countries, devices, users = (frozenset(v.decode() for v in members) for members in pipe.execute())
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
        self._lists = Blocklists(countries, devices, users)
        for name, members in zip(BLOCKLIST_KEYS, (countries, devices, users), strict=True):
            metrics.BLOCKLIST_SIZE.labels(name).set(len(members))
