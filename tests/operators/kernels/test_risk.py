"""The compiled Redis commands against :func:`operators.sinks.redis.risk_commands`: the
same bytes for any users (non-ASCII ids included), levels, scores, shared and separate
``scored_at`` and chunk boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.sinks import redis as sink
from tests.operators.kernels.conftest import compiled
from tests.support import scored_events


@pytest.mark.parametrize("n", [0, 1, sink.CHUNK - 1, sink.CHUNK, 2 * sink.CHUNK + 7])
def test_commands_are_the_reference_bytes(n):
    kernel = compiled("risk")
    base = scored_events(max(n, 1), users=max(n, 1))
    later = datetime(2026, 1, 1, tzinfo=UTC)
    items = [
        (
            f"usér-{i}" if i % 3 else f"u{i}",
            msgspec.structs.replace(
                s,
                scored_at=later + timedelta(seconds=i // 100),
                verdict=msgspec.structs.replace(
                    s.verdict, fraud_score=i * 1.37, risk_level=["LOW", "HIGH", "ODD"][i % 3]
                ),
            ),
        )
        for i, s in enumerate(base[:n])
    ]
    ttl = sink._bulk(b"86400")
    want = list(sink.risk_commands(items, ttl))
    got = kernel.risk_commands(items, sink._KEY_PREFIX, ttl, sink.CHUNK, sink._LEVELS, sink._DECISIONS)
    assert got == want


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 30)),  # noqa: DTZ001 (naive bounds: hypothesis asks for them)
    offset=st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59)),
)
def test_event_times_are_written_as_isoformat_writes_them(when, offset):
    kernel = compiled("risk")
    s = scored_events(1)[0]
    stamp = when.replace(tzinfo=timezone(offset))
    items = [("u", msgspec.structs.replace(s, event=msgspec.structs.replace(s.event, timestamp=stamp)))]
    ttl = sink._bulk(b"60")
    got = kernel.risk_commands(items, sink._KEY_PREFIX, ttl, sink.CHUNK, sink._LEVELS, sink._DECISIONS)
    assert got == list(sink.risk_commands(items, ttl))
