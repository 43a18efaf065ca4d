"""Read NYC TLC trip records (yellow and green; CSV, gzipped CSV or Parquet).

Both schemas are accepted: the pre-July-2016 one with pickup/dropoff
longitude/latitude, and the later one with ``PULocationID``/``DOLocationID``
zone ids (mapped to zone centroids when a :class:`ZoneTable` is given). Headers
are normalised, so the TLC's own names (``tpep_*``, ``lpep_*``, ``VendorID``,
``RatecodeID``, ...) and snake_case variants (``pickup_datetime``,
``pickup_location_id``, ...) both work. Files are streamed row by row
(Parquet in record batches), never loaded whole.

How odd rows are treated (counted in :class:`TripReadReport`):

=================== ======================================================
``unparseable``     dropped: a date or number that does not parse
``negative_amount`` dropped: total below zero (refunds and voids)
``negative_duration`` dropped: dropoff before pickup
``outside_file_month`` dropped: more than a day outside the month in the file
                    name (``..._YYYY-MM...``), e.g. meter clocks set to 2008
``zero_distance``   kept: a valid but odd trip (fare per mile is then unknown)
``zero_duration``   kept
``no_location``     kept without a location: zero or out-of-area coordinates,
                    unknown zones (264/265) or no centroid for the zone
=================== ======================================================
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "NEW_YORK",
    "ReplayInputError",
    "Trip",
    "TripReadReport",
    "ZoneTable",
    "normalise_header",
    "read_trips",
]

NEW_YORK = ZoneInfo("America/New_York")
_ALIASES = {
    "vendorid": "vendor_id",
    "tpep_pickup_datetime": "pickup_datetime",
    "lpep_pickup_datetime": "pickup_datetime",
    "tpep_dropoff_datetime": "dropoff_datetime",
    "lpep_dropoff_datetime": "dropoff_datetime",
    "pulocationid": "pickup_location_id",
    "dolocationid": "dropoff_location_id",
    "ratecodeid": "rate_code_id",
    "pickup_longitude": "pickup_longitude",
    "pickup_latitude": "pickup_latitude",
    "dropoff_longitude": "dropoff_longitude",
    "dropoff_latitude": "dropoff_latitude",
}
_AREA = (40.3, 41.3, -74.6, -73.2)  # generous NYC box: lat min/max, lon min/max
_MONTH = re.compile(r"(?<!\d)(20\d\d|19\d\d)-(0[1-9]|1[0-2])(?!\d)")


class ReplayInputError(ValueError):
    """An input file of a replay cannot be used: the message names the file (and
    the column or row) and what is expected, in one line."""


def normalise_header(name: str) -> str:
    """TLC header → canonical snake_case name.

    >>> [normalise_header(h) for h in ("tpep_pickup_datetime", "PULocationID", "RatecodeID", "trip_distance")]
    ['pickup_datetime', 'pickup_location_id', 'rate_code_id', 'trip_distance']
    """
    key = name.strip().strip('"').lstrip("\ufeff")
    return _ALIASES.get(key.lower(), key.lower())


@dataclass(frozen=True, slots=True)
class Trip:
    source: str
    row: int
    taxi: str
    vendor_id: int | None
    pickup: datetime
    dropoff: datetime
    passenger_count: int | None
    trip_distance: float
    fare_amount: float | None
    tip_amount: float | None
    total_amount: float
    payment_type: int | None
    pickup_zone: int | None
    dropoff_zone: int | None
    latitude: float | None
    longitude: float | None
    place: str | None

    @property
    def duration_minutes(self) -> float:
        return (self.dropoff - self.pickup).total_seconds() / 60.0


@dataclass
class TripReadReport:
    rows: int = 0
    trips: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    kept_odd: dict[str, int] = field(default_factory=dict)

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1

    def odd(self, why: str) -> None:
        self.kept_odd[why] = self.kept_odd.get(why, 0) + 1


@dataclass(frozen=True)
class ZoneTable:
    """TLC taxi zones: names (zone lookup) and WGS84 centroids.

    Sources (see ``docs/replay.md``): the TLC's ``taxi_zone_lookup.csv`` and a
    centroid CSV with ``LocationID`` plus ``latitude``/``longitude`` columns
    in degrees.
    """

    names: dict[int, str]
    centroids: dict[int, tuple[float, float]]

    @classmethod
    def load(cls, lookup: Path | None, centroids: Path | None) -> ZoneTable:
        """Read the files; :class:`ReplayInputError` names the file and what is wrong.

        A centroid file may carry projected coordinates too (NY State Plane, in
        feet, often in columns named ``lat``/``lon``): ``latitude``/``longitude``
        are preferred when present, and coordinates outside degrees are refused.
        """
        names: dict[int, str] = {}
        points: dict[int, tuple[float, float]] = {}
        if lookup is not None:
            needed = ("LocationID", "Zone", "Borough")
            for n, row in _csv_rows(lookup, needed, "--zones needs LocationID, Zone and Borough"):
                names[_zone_id(lookup, n, row)] = f"{row['Zone']}, {row['Borough']}"
        if centroids is not None:
            fields = _header(centroids)
            lat_col = "latitude" if "latitude" in fields else "lat"
            lon_col = "longitude" if "longitude" in fields else "lon"
            expected = "--centroids needs LocationID, latitude and longitude (WGS84 degrees)"
            for n, row in _csv_rows(centroids, ("LocationID", lat_col, lon_col), expected):
                try:
                    lat, lon = float(row[lat_col]), float(row[lon_col])
                except (TypeError, ValueError) as exc:
                    raise ReplayInputError(
                        f"{centroids}:{n}: {lat_col}/{lon_col} ({row[lat_col]!r}, {row[lon_col]!r}) "
                        "are not numbers; expected WGS84 degrees"
                    ) from exc
                if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                    raise ReplayInputError(
                        f"{centroids}:{n}: columns {lat_col!r}/{lon_col!r} hold ({lat:g}, {lon:g}), not in "
                        "degrees (projected coordinates, e.g. feet?); --centroids needs LocationID, "
                        "latitude and longitude in WGS84 degrees"
                    )
                points[_zone_id(centroids, n, row)] = (lat, lon)
        return cls(names, points)


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [h.strip().lstrip("\ufeff") for h in next(csv.reader(f), [])]
    except OSError as exc:
        raise ReplayInputError(f"{path}: cannot read it ({exc.strerror})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReplayInputError(f"{path}: not a UTF-8 CSV file ({exc})") from exc


def _csv_rows(path: Path, needed: tuple[str, ...], expected: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV that has the ``needed`` columns."""
    fields = _header(path)
    missing = [c for c in needed if c not in fields]
    if missing:
        raise ReplayInputError(
            f"{path}: no column {', '.join(missing)}; {expected} (it has {', '.join(fields) or 'no header'})"
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, fieldnames=fields)
        next(reader, None)
        yield from enumerate(reader, start=2)


def _zone_id(path: Path, line: int, row: dict[str, str]) -> int:
    try:
        return int(row["LocationID"])
    except (TypeError, ValueError) as exc:
        raise ReplayInputError(
            f"{path}:{line}: LocationID {row['LocationID']!r} is not a whole number"
        ) from exc


def _num(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    result = float(value)
    return None if math.isnan(result) else result


def _int(row: dict[str, Any], key: str) -> int | None:
    value = _num(row, key)
    return None if value is None else int(value)


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        naive = (
            value.replace(tzinfo=None)
            if value.tzinfo is None
            else value.astimezone(NEW_YORK).replace(tzinfo=None)
        )
    else:
        naive = datetime.fromisoformat(str(value).strip())
    return naive.replace(tzinfo=NEW_YORK)


def _in_area(lat: float | None, lon: float | None) -> bool:
    return lat is not None and lon is not None and _AREA[0] <= lat <= _AREA[1] and _AREA[2] <= lon <= _AREA[3]


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=16_384):
            names = [normalise_header(n) for n in batch.schema.names]
            for cells in zip(*(col.to_pylist() for col in batch.columns), strict=True):
                yield dict(zip(names, cells, strict=True))
        return
    raw = gzip.open(path, "rb") if suffixes and suffixes[-1] == ".gz" else open(path, "rb")  # noqa: SIM115
    with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header: list[str] = [normalise_header(h) for h in next(reader, [])]
        for values in reader:
            if values:
                yield dict(zip(header, values, strict=False))


def _month_window(path: Path) -> tuple[datetime, datetime] | None:
    match = _MONTH.search(path.name)
    if match is None:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=NEW_YORK)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=NEW_YORK)
    return start - timedelta(days=1), end + timedelta(days=1)


def read_trips(
    path: Path, zones: ZoneTable | None = None, report: TripReadReport | None = None
) -> Iterator[Trip]:
    """Valid trips of one TLC file, in file order (see the module docstring)."""
    report = report if report is not None else TripReadReport()
    window = _month_window(path)
    default_taxi = "green" if "green" in path.name.lower() else "yellow"
    for row_no, row in enumerate(_rows(path), start=1):
        report.rows += 1
        try:
            pickup, dropoff = _time(row["pickup_datetime"]), _time(row["dropoff_datetime"])
            total = _num(row, "total_amount")
            distance = _num(row, "trip_distance") or 0.0
            lat, lon = _num(row, "dropoff_latitude"), _num(row, "dropoff_longitude")
            pu, do = _int(row, "pickup_location_id"), _int(row, "dropoff_location_id")
            trip_fields = (
                _int(row, "vendor_id"),
                _int(row, "passenger_count"),
                _num(row, "fare_amount"),
                _num(row, "tip_amount"),
                _int(row, "payment_type"),
            )
        except (KeyError, ValueError, TypeError):
            report.drop("unparseable")
            continue
        if total is None:
            report.drop("unparseable")
            continue
        if total < 0:
            report.drop("negative_amount")
            continue
        if dropoff < pickup:
            report.drop("negative_duration")
            continue
        if window is not None and not (window[0] <= dropoff < window[1]):
            report.drop("outside_file_month")
            continue
        if distance <= 0:
            report.odd("zero_distance")
        if dropoff == pickup:
            report.odd("zero_duration")
        place = zones.names.get(do) if zones and do is not None else None
        if not _in_area(lat, lon):
            lat = lon = None
            centroid = zones.centroids.get(do) if zones and do is not None else None
            if centroid is not None:
                lat, lon = centroid
        if lat is None:
            report.odd("no_location")
        color = str(row.get("color") or default_taxi)
        vendor, passengers, fare, tip, payment = trip_fields
        report.trips += 1
        yield Trip(
            path.name,
            row_no,
            color,
            vendor,
            pickup,
            dropoff,
            passengers,
            distance,
            fare,
            tip,
            total,
            payment,
            pu,
            do,
            lat,
            lon,
            place,
        )
