"""The Postgres side of labels: store them (idempotently) and find the events
they are about among the scored events.

``record`` inserts into ``labels`` with ``ON CONFLICT DO NOTHING`` on
``(event_id, source, label_time)`` and says how many were new; ``lookup`` reads
each event's time and entity keys from ``scored_events``. Connection failures
are retried with the sinks' backoff, then raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from operators.labels import EventRef, Label
from operators.sinks.postgres import PG_ERRORS, LazyConnection
from operators.sinks.retry import RetryPolicy, retrying

__all__ = ["PostgresLabelStore"]

T = TypeVar("T")

_INSERT = (
    "INSERT INTO labels (event_id, is_fraud, label_time, source) "
    "SELECT * FROM unnest(%s::text[], %s::boolean[], %s::timestamptz[], %s::text[]) "
    "ON CONFLICT (event_id, source, label_time) DO NOTHING"
)
_LOOKUP = (
    "SELECT event_id, extract(epoch FROM event_time)::float8, user_id, "
    "coalesce(merchant_id, merchant_name), device_id FROM scored_events WHERE event_id = ANY(%s)"
)


class PostgresLabelStore:
    """Labels table writer and scored-event lookup (one connection, opened lazily)."""

    def __init__(self, url: str, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.db = LazyConnection(url, autocommit=True)

    def _run(self, fn: Callable[[], T]) -> T:
        return retrying("labels", self.policy, fn, PG_ERRORS, self.db.reset)

    def record(self, labels: Sequence[Label]) -> int:
        """Store labels; returns how many were not stored before."""
        if not labels:
            return 0
        columns = (
            [lab.event_id for lab in labels],
            [lab.is_fraud for lab in labels],
            [lab.label_time for lab in labels],
            [lab.source for lab in labels],
        )

        def write() -> int:
            with self.db.get().cursor() as cur:
                cur.execute(_INSERT, columns)
                return cur.rowcount

        return self._run(write)

    def lookup(self, event_ids: Sequence[str]) -> dict[str, EventRef]:
        """Time and entity keys of the scored events among ``event_ids``."""
        if not event_ids:
            return {}

        def read() -> dict[str, EventRef]:
            with self.db.get().cursor() as cur:
                cur.execute(_LOOKUP, (list(event_ids),))
                return {
                    row[0]: EventRef(row[1], {"user": row[2], "merchant": row[3], "device": row[4]})
                    for row in cur
                }

        return self._run(read)

    def close(self) -> None:
        self.db.reset()
