import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.event_files import EventReadReport, read_events, row_to_event

ROWS = [
    {
        "event_id": "e1",
        "user_id": "u1",
        "amount": 10.5,
        "timestamp": "2025-06-02T12:00:00+02:00",
        "latitude": 48.85,
        "longitude": 2.35,
        "country": "FR",
        "city": "Paris",
        "attributes.trip_distance": 3.5,
    },
    {"event_id": "e2", "user_id": "u2", "amount": 7, "timestamp": "2025-06-02T13:00:00Z", "currency": "EUR"},
    {"event_id": "e3", "user_id": "u3", "amount": -1, "timestamp": "2025-06-02T13:00:00Z"},
]


def test_flat_rows_become_contract_events():
    assert row_to_event(ROWS[0]) == {
        "event_id": "e1",
        "user_id": "u1",
        "amount": 10.5,
        "timestamp": "2025-06-02T12:00:00+02:00",
        "location": {"latitude": 48.85, "longitude": 2.35, "country": "FR", "city": "Paris"},
        "attributes": {"trip_distance": 3.5},
    }


def check(events, report):
    assert [e.event_id for e in events] == ["e1", "e2"]
    assert events[0].location.city == "Paris" and events[0].attributes == {"trip_distance": 3.5}
    assert events[1].currency == "EUR"
    assert (report.read, report.invalid, report.errors) == (3, 1, {"amount": 1})


def test_jsonl_gz(tmp_path):
    path = tmp_path / "e.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for row in ROWS:
            f.write(json.dumps(row_to_event(row)) + "\n")
    report = EventReadReport()
    check(list(read_events([str(path)], report)), report)


def test_csv(tmp_path):
    path = tmp_path / "e.csv"
    fields = sorted({k for r in ROWS for k in r})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(ROWS)
    report = EventReadReport()
    check(list(read_events([str(path)], report)), report)


def test_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    fields = sorted({k for r in ROWS for k in r})
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in fields} for r in ROWS]), path)
    report = EventReadReport()
    check(list(read_events([str(path)], report)), report)


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        list(read_events([str(tmp_path / "events.xlsx")]))


@pytest.mark.integration
def test_postgres_reads_back_scored_events(make_settings):
    from infra.migrations import apply_migrations
    from operators.sinks import PostgresSink
    from tests.support import scored_events

    settings = make_settings()
    apply_migrations(settings.database_url)
    written = scored_events(12)
    part = PostgresSink(settings.database_url).build("pg", 0, 1)
    part.write_batch(written)
    part.close()
    events = list(read_events([settings.database_url]))
    assert [e.event_id for e in events] == [s.event.event_id for s in written]
    assert events[4].location.country == "KP" and events[4].attributes == {"k": 4}
    assert events[4].amount == round(written[4].event.amount, 2)
