"""The compiled binary COPY rows against psycopg's own formatting of
:func:`operators.records.scored_event_row`: the same bytes for every column, NULLs,
time zones, amounts at every scale, hits, challengers and shadow rule sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import postgres
from psycopg._copy_base import format_row_binary
from psycopg.adapt import Transformer
from psycopg.pq import Format

from operators.records import SCORED_EVENT_COPY_TYPES, scored_event_row
from operators.scoring import ScoredEvent, ShadowRules
from operators.sinks.postgres import event_days
from tests.operators.kernels.conftest import compiled
from tests.support import scored_events


def _psycopg(items: list[ScoredEvent]) -> bytes:
    tx = Transformer()
    tx.set_dumper_types([postgres.types[t].oid for t in SCORED_EVENT_COPY_TYPES], Format.BINARY)
    out = bytearray()
    for s in items:
        format_row_binary(scored_event_row(s, binary=True), tx, out)
    return bytes(out)


def test_scored_events_are_the_bytes_psycopg_writes():
    kernel = compiled("rows")
    items = scored_events(40, users=4)
    assert kernel.copy_rows(items) == _psycopg(items)
    assert kernel.copy_rows(items, 5, 9) == _psycopg(items[5:9])
    assert kernel.copy_rows([]) == b""


_amounts = st.one_of(
    st.sampled_from([0.0, 0.004, 0.005, 0.015, 0.05, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 9_999_999_999.99]),
    st.floats(0, 9_999_999_999.99, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
    st.integers(0, 8 * 10**6).map(lambda k: k / 8),  # exact ties at the third decimal: half to even
)


@settings(max_examples=300, deadline=None)
@given(
    amount=_amounts,
    offset_min=st.integers(-14 * 60, 14 * 60),
    when=st.datetimes(datetime(1970, 1, 2), datetime(2999, 12, 30)),  # noqa: DTZ001 (naive bounds: hypothesis asks for them)
    ingest_ms=st.one_of(st.none(), st.just(0), st.integers(1, 4_000_000_000_000)),
    challenger=st.one_of(st.none(), st.tuples(st.sampled_from(["v2", "é"]), st.floats(0, 100))),
    shadow=st.one_of(
        st.none(), st.builds(ShadowRules, st.integers(1, 99), st.floats(0, 100), st.just(["a", "b"]))
    ),
    rules_version=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    score=st.one_of(st.floats(0, 100), st.just(1e-40), st.just(3.4e38)),
)
def test_any_values_are_the_bytes_psycopg_writes(
    amount, offset_min, when, ingest_ms, challenger, shadow, rules_version, score
):
    kernel = compiled("rows")
    base = scored_events(3, users=1)
    stamp = when.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    items = [
        msgspec.structs.replace(
            s,
            event=msgspec.structs.replace(
                s.event, amount=amount, timestamp=stamp, location=None if i else s.event.location
            ),
            verdict=msgspec.structs.replace(
                s.verdict, fraud_score=score, scores={"rules": score, "supervised": None}
            ),
            ingest_ms=ingest_ms,
            challenger=challenger,
            shadow_rules=shadow,
            rules_version=rules_version,
            scored_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for i, s in enumerate(base)
    ]
    assert kernel.copy_rows(items) == _psycopg(items)


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/St_Johns", "Asia/Kathmandu"])
def test_a_zone_with_rules_is_the_bytes_psycopg_writes(zone):
    """Not a fixed offset (the job's events always are; a caller's may not be): the kernel
    asks the zone for its offset, summer and winter."""
    kernel = compiled("rows")
    base = scored_events(2, users=1)
    stamps = [
        datetime(2025, 7, 1, 12, 30, tzinfo=ZoneInfo(zone)),
        datetime(2025, 1, 1, 0, 5, tzinfo=ZoneInfo(zone)),
    ]
    items = [
        msgspec.structs.replace(s, event=msgspec.structs.replace(s.event, timestamp=t), scored_at=t)
        for s, t in zip(base, stamps, strict=True)
    ]
    assert kernel.copy_rows(items) == _psycopg(items)
    assert kernel.event_days(items) == event_days(items)


def test_a_naive_timestamp_is_an_error_as_in_psycopg():
    kernel = compiled("rows")
    s = scored_events(1)[0]
    naive = msgspec.structs.replace(s, scored_at=datetime(2026, 1, 1))  # noqa: DTZ001 (the point)
    with pytest.raises(ValueError, match="aware"):
        kernel.copy_rows([naive])


# Hypothesis takes naive bounds and applies ``timezones`` to what it draws
_EARLIEST = datetime(1969, 12, 30)  # noqa: DTZ001
_LATEST = datetime(2200, 12, 31)  # noqa: DTZ001
_ZONES = st.just(UTC) | st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_MIDNIGHT = st.integers(0, 80_000).map(lambda d: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=d))


@settings(max_examples=200, deadline=None)
@given(
    stamps=st.lists(
        st.datetimes(_EARLIEST, _LATEST, timezones=_ZONES)
        | _MIDNIGHT
        | _MIDNIGHT.map(lambda t: t - timedelta(microseconds=1)),
        min_size=0,
        max_size=12,
    )
)
def test_the_events_days_are_the_references(stamps):
    """The days whose partitions the sink makes sure of, in C: the same set, midnights,
    the microsecond before them, offsets and days before 1970 included."""
    base = scored_events(1)[0]
    items = [
        msgspec.structs.replace(base, event=msgspec.structs.replace(base.event, timestamp=t)) for t in stamps
    ]
    assert compiled("rows").event_days(items) == event_days(items)
