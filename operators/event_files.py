"""Read transaction events from files or Postgres, validated like the stream.

Formats: JSON lines (``.jsonl``, ``.ndjson``, optionally ``.gz``) holding
contract events; CSV (optionally ``.gz``) and Parquet with one column per
contract field, location flattened to ``latitude``/``longitude``/``country``/
``city`` and ``attributes.<name>`` columns for attributes; and
``postgresql://...`` URLs, which read back ``scored_events``. Every record goes
through the same validation as the stream; invalid ones are counted, not
raised.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operators.events import InvalidEvent, TransactionEvent, decode_event

__all__ = ["EventReadReport", "read_events", "row_to_event"]

_LOCATION = ("latitude", "longitude", "country", "city")


@dataclass
class EventReadReport:
    read: int = 0
    invalid: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def reject(self, error: str) -> None:
        self.invalid += 1
        key = error.split(":", maxsplit=1)[0]
        self.errors[key] = self.errors.get(key, 0) + 1


def row_to_event(row: dict[str, Any]) -> dict[str, Any]:
    """A flat row (CSV, Parquet, SQL) in contract form."""
    event: dict[str, Any] = {}
    attributes: dict[str, Any] = dict(row.get("attributes") or {})
    location: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value == "" or key == "attributes":
            continue
        if key in _LOCATION:
            location[key] = value
        elif key.startswith("attributes."):
            attributes[key.removeprefix("attributes.")] = value
        else:
            event[key] = value
    if "latitude" in location and "longitude" in location:
        event["location"] = location
    if attributes:
        event["attributes"] = attributes
    return event


def _coerce_csv(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("amount", "latitude", "longitude") or key.startswith("attributes."):
            try:
                out[key] = float(value) if value not in ("", None) else None
                continue
            except ValueError:
                pass
        out[key] = value
    return out


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _raw_records(source: str) -> Iterator[bytes]:
    if source.startswith(("postgresql://", "postgres://")):
        yield from _postgres(source)
        return
    path = Path(source)
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                yield json.dumps(row_to_event(row), default=str).encode()
    elif ".csv" in suffixes:
        with _open_text(path) as f:
            for row in csv.DictReader(f):
                yield json.dumps(row_to_event(_coerce_csv(row))).encode()
    elif {".jsonl", ".ndjson", ".json"} & set(suffixes):
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    yield line.encode()
    else:
        raise ValueError(
            f"{source}: unknown format (use .jsonl, .csv, .parquet, optionally .gz, or a postgresql:// URL)"
        )


def _postgres(url: str) -> Iterator[bytes]:
    import psycopg

    from operators.records import EVENT_COLUMNS

    cols = tuple("amount::float8" if c == "amount" else c for c in EVENT_COLUMNS)
    names = [c.split("::")[0].replace("event_time", "timestamp") for c in cols]
    with psycopg.connect(url) as conn, conn.cursor(name="fraudstream_read") as cur:
        cur.execute(f"SELECT {', '.join(cols)} FROM scored_events ORDER BY event_time")
        for values in cur:
            row = dict(zip(names, values, strict=True))
            if row.get("country"):
                row["country"] = row["country"].strip()
            yield json.dumps(row_to_event(row), default=lambda v: v.isoformat()).encode()


def read_events(
    sources: Iterable[str],
    report: EventReadReport | None = None,
) -> Iterator[TransactionEvent]:
    """Valid events from every source, in file order."""
    report = report if report is not None else EventReadReport()
    for source in sources:
        for raw in _raw_records(source):
            report.read += 1
            result = decode_event(raw)
            if isinstance(result, InvalidEvent):
                report.reject(result.error)
            else:
                yield result
