"""A throttle for things re-read on an interval while the job runs (live
blocklists, the active model version): due at most once every ``interval_s``.

>>> now = [0.0]
>>> every = Throttle(2.0, clock=lambda: now[0])
>>> every.due(), every.due()
(True, False)
>>> now[0] = 2.0; every.due()
True
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self._next = 0.0

    def due(self) -> bool:
        """True when the interval has passed since the last time it was (the first call is)."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True
