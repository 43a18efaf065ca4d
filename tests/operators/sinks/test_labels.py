from datetime import UTC, datetime

import psycopg
import pytest

from infra.migrations import apply_migrations
from operators.labels import Label
from operators.sinks import PostgresSink
from operators.sinks.labels import PostgresLabelStore
from tests.support import scored_events

pytestmark = pytest.mark.integration


def test_labels_are_stored_once_and_resolved_to_their_events(make_settings):
    settings = make_settings()
    apply_migrations(settings.database_url)
    part = PostgresSink(settings.database_url).build("pg", 0, 1)
    events = scored_events(5)
    part.write_batch(events)
    part.close()
    store = PostgresLabelStore(settings.database_url)
    t = datetime(2026, 2, 1, tzinfo=UTC)
    labels = [Label("e1", True, t, "chargeback"), Label("e2", False, t), Label("nope", True, t)]
    assert store.record(labels) == 3
    assert store.record([*labels, Label("e1", True, t, "analyst")]) == 1  # duplicates add nothing
    refs = store.lookup(["e1", "e2", "nope"])
    assert set(refs) == {"e1", "e2"}
    first = events[1].event
    assert refs["e1"].event_ts == pytest.approx(first.timestamp.timestamp())
    assert refs["e1"].keys == {
        "user": first.user_id,
        "merchant": first.merchant_name,
        "device": first.device_id,
    }
    store.close()
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM labels").fetchone() == (4,)
