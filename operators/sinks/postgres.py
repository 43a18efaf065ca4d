"""Postgres sink: COPY a batch (binary) straight into ``scored_events``; if an event of it
is already there (a re-delivery after recovery), COPY it into a temporary staging
table instead, then one ``INSERT ... ON CONFLICT (event_id, event_time) DO
NOTHING``. Either way in one transaction, so a batch is all written or not at all.

The direct COPY is a transaction of its own (BEGIN, COPY, COMMIT: a savepoint around
it cost two more round trips per batch); a unique violation rolls it back and the
batch takes the staging path in a new one, and so do the batches of the next
``STAGING_AFTER_CONFLICT_S`` seconds (a replay after recovery re-delivers many
batches in a row, and each would otherwise be copied twice).

``scored_events`` is partitioned by event day (migration 007): before its
first write to a day, the sink has ``fraudstream_day_partition`` create that
day's partition. Re-delivered events never create a second row. Connection
failures are retried with backoff (the dataflow waits: backpressure), then raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg import sql
from psycopg.adapt import PyFormat

from operators import kernels, metrics
from operators.records import SCORED_EVENT_COLUMNS, SCORED_EVENT_COPY_TYPES, scored_event_row
from operators.scoring import ScoredEvent
from operators.sinks.retry import RetryPolicy, retrying

__all__ = ["PG_ERRORS", "LazyConnection", "PostgresSink"]

_STAGE = "scored_events_stage"
_COLS = sql.SQL(", ").join(sql.Identifier(c) for c in SCORED_EVENT_COLUMNS)
_CREATE_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE scored_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
).format(sql.Identifier(_STAGE))
_COPY = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(_STAGE), _COLS)
_COPY_DIRECT = sql.SQL("COPY scored_events ({}) FROM STDIN (FORMAT BINARY)").format(_COLS)
STAGING_AFTER_CONFLICT_S = 30.0
_INSERT = sql.SQL(
    "INSERT INTO scored_events ({cols}) SELECT {cols} FROM {stage} "
    "ON CONFLICT (event_id, event_time) DO NOTHING"
).format(cols=_COLS, stage=sql.Identifier(_STAGE))


_DAY = 86_400
_EPOCH = date(1970, 1, 1).toordinal()

PG_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
"""Errors worth a reconnect and a retry."""


class LazyConnection:
    """One connection, opened on first use and again after :meth:`reset`
    (``setup`` runs on each new connection)."""

    def __init__(
        self, url: str, setup: Callable[[psycopg.Connection], None] | None = None, autocommit: bool = False
    ) -> None:
        self.url, self.setup, self.autocommit = url, setup, autocommit
        self.conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, connect_timeout=5, autocommit=self.autocommit)
            if self.setup is not None:
                self.setup(self.conn)
        return self.conn

    def reset(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


def _create_stage(conn: psycopg.Connection) -> None:
    """Set up a sink connection: the staging table, and the C dumper for the jsonb columns.

    A binary COPY types its jsonb columns ``bytea`` (``records.SCORED_EVENT_COPY_TYPES``),
    and psycopg picks the dumper of a type by its oid: the last one registered for
    ``bytea`` is the pure-Python one of ``psycopg.Binary``, called once per jsonb value.
    Registering the C dumper of ``bytes`` again makes it the one the COPY uses."""
    conn.adapters.register_dumper(bytes, conn.adapters.get_dumper(bytes, PyFormat.BINARY))
    conn.execute(_CREATE_STAGE)
    conn.commit()


ROWS_PER_WRITE = 64
"""Rows per ``Copy.write`` of the compiled rows (about 100 KB)."""


def _send_rows(copy: psycopg.Copy, items: list[ScoredEvent]) -> None:
    """Every row of ``items`` into a binary COPY, sent as it is built, so Postgres stores
    the first rows while the next are built (building every row first left Postgres
    idle, then the job waiting for it).

    The rows come from the compiled kernel (``operators.kernels.rows``: the bytes
    psycopg would write, built in C) where it is built, else psycopg formats
    :func:`~operators.records.scored_event_row` row by row."""
    rows = kernels.rows
    if rows is None:
        copy.set_types(SCORED_EVENT_COPY_TYPES)
        for s in items:
            copy.write_row(scored_event_row(s, binary=True))
        return
    copy.write(rows.SIGNATURE)
    for start in range(0, len(items), ROWS_PER_WRITE):
        copy.write(rows.copy_rows(items, start, start + ROWS_PER_WRITE))
    copy.write(rows.TRAILER)


def _copy(cur: psycopg.Cursor, query: sql.Composed, items: list[ScoredEvent]) -> None:
    """Binary COPY of ``items`` by ``query`` (:func:`_send_rows`)."""
    with cur.copy(query) as copy:
        _send_rows(copy, items)


def event_days(items: list[ScoredEvent]) -> set[int]:
    """The UTC days (since 1970-01-01) of the events of ``items``: the days whose partitions
    their rows go to (compiled: ``operators.kernels.rows.event_days``)."""
    return {int(s.event.timestamp.timestamp() // _DAY) for s in items}


class _Partition(StatelessSinkPartition[ScoredEvent]):
    def __init__(self, url: str, policy: RetryPolicy) -> None:
        self.policy = policy
        self.db = LazyConnection(url, _create_stage)
        self.days: set[int] = set()
        """Days (since the epoch, UTC) whose partition this connection has seen exist."""
        self.staging_until = 0.0
        """Monotonic time until which batches take the staging path (after a conflict)."""
        self.paths = {"direct": 0, "staging": 0}
        """Batches written by each path since this partition was built."""

    def _ensure_days(self, conn: psycopg.Connection, days: set[int]) -> None:
        missing = days - self.days
        if missing:
            with conn.transaction():
                for day in sorted(missing):
                    conn.execute("SELECT fraudstream_day_partition(%s)", (date.fromordinal(_EPOCH + day),))
            self.days |= missing

    def _write(self, items: list[ScoredEvent], days: set[int]) -> int:
        conn = self.db.get()
        self._ensure_days(conn, days)
        try:
            return self._insert(conn, items)
        except psycopg.errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            self.days.clear()  # retention dropped a day this connection knew: create it again
            self._ensure_days(conn, days)
            return self._insert(conn, items)

    def _insert(self, conn: psycopg.Connection, items: list[ScoredEvent]) -> int:
        if time.monotonic() >= self.staging_until:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    _copy(cur, _COPY_DIRECT, items)
                self.paths["direct"] += 1
                return len(items)
            except psycopg.errors.UniqueViolation:
                self.staging_until = time.monotonic() + STAGING_AFTER_CONFLICT_S
        with conn.transaction(), conn.cursor() as cur:
            _copy(cur, _COPY, items)
            cur.execute(_INSERT)
            self.paths["staging"] += 1
            return cur.rowcount

    def write_batch(self, items: list[ScoredEvent]) -> None:
        self.begin(items)()

    def begin(self, items: list[ScoredEvent]) -> Callable[[], None]:
        """Start writing ``items``; the returned call finishes (or, on any failure, writes
        them again the way :meth:`write_batch` always did: retried, the staging path after a
        conflict) and counts them.

        In the usual case, a direct COPY to days this connection knows, the rows are sent
        here and the returned call ends the COPY and commits: Postgres stores the rows while
        the caller does something else (:class:`~operators.sinks.fanout.Fanout` runs the
        other sinks), where the job used to wait for it (13% of a worker's wall time,
        ``bench job``, one process, py-spy). Nothing is written before the returned call
        has returned."""
        began = time.perf_counter()
        days = kernels.rows.event_days(items) if kernels.rows is not None else event_days(items)
        copying = None
        conn = self.db.conn
        if time.monotonic() >= self.staging_until and conn is not None and self._days_ready(conn, days):
            copying = self._start_copy(conn, items)
        started_s = time.perf_counter() - began

        def finish() -> None:
            resumed = time.perf_counter()
            if copying is None or not self._finish_copy(copying):
                inserted = retrying(
                    "postgres", self.policy, lambda: self._write(items, days), PG_ERRORS, self.db.reset
                )
            else:
                inserted = len(items)
            now = time.time()
            metrics.observe_many(
                metrics.END_TO_END_LATENCY.labels("postgres"),
                [max(0.0, now - s.ingest_ms / 1000.0) for s in items if s.ingest_ms is not None],
            )
            metrics.SINK_RECORDS.labels("postgres").inc(inserted)
            metrics.STAGE_SECONDS.labels("sink_postgres").observe(started_s + time.perf_counter() - resumed)
            metrics.BATCH_SIZE.labels("sink_postgres").observe(len(items))

        return finish

    def _days_ready(self, conn: psycopg.Connection, days: set[int]) -> bool:
        """Whether every day of ``days`` has its partition, creating those this connection
        has not seen (a replay of a month meets a new day every few batches: each took the
        retried path, written whole, where the job waited for it); False when that failed
        (the retried path tries again)."""
        if days <= self.days:
            return True
        try:
            self._ensure_days(conn, days)
        except Exception as exc:
            self._after_failure(None, exc)
            return False
        return True

    def _start_copy(self, conn: psycopg.Connection, items: list[ScoredEvent]) -> ExitStack | None:
        """A direct COPY of ``items`` begun in a transaction of its own, every row sent (but
        psycopg's last 32 KiB when it formats them); None when it failed (rolled back: the
        retried path writes the batch)."""
        stack = ExitStack()
        try:
            stack.enter_context(conn.transaction())
            cur = stack.enter_context(conn.cursor())
            copy = stack.enter_context(cur.copy(_COPY_DIRECT))
            _send_rows(copy, items)
        except Exception as exc:
            self._after_failure(stack, exc)
            return None
        return stack

    def _finish_copy(self, stack: ExitStack) -> bool:
        """End the COPY and commit; False when that failed (rolled back)."""
        try:
            stack.close()
        except Exception as exc:
            self._after_failure(None, exc)
            return False
        self.paths["direct"] += 1
        return True

    def _after_failure(self, stack: ExitStack | None, exc: Exception) -> None:
        """Roll back what ``stack`` began and note what the failure means for the retried
        path; a failure that is not Postgres's is raised."""
        if stack is not None:
            try:
                stack.__exit__(type(exc), exc, exc.__traceback__)
            except Exception:  # the rollback of a broken connection fails too
                self.db.reset()
        if isinstance(exc, psycopg.errors.UniqueViolation):
            self.staging_until = time.monotonic() + STAGING_AFTER_CONFLICT_S
        elif isinstance(exc, psycopg.errors.CheckViolation):
            self.days.clear()  # a day's partition went (retention): the retried path creates it
        elif isinstance(exc, PG_ERRORS):
            self.db.reset()
        elif not isinstance(exc, psycopg.Error):
            raise exc

    def close(self) -> None:
        self.db.reset()
        self.days.clear()


class PostgresSink(DynamicSink[ScoredEvent]):
    """Writes every scored event to ``scored_events`` (one connection per worker)."""

    def __init__(self, url: str, policy: RetryPolicy | None = None) -> None:
        self.url = url
        self.policy = policy or RetryPolicy()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.url, self.policy)
