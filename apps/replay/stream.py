"""`fraudstream replay`: TLC trips (or any labelled CSV/Parquet) to the transactions topic.

Pipeline: read files (streamed) → events (riders/devices assigned from the seed)
→ labelled fraud injection → event-time order (an external merge sort: chunks
are sorted in memory and spilled to temporary files, then merged) → paced
production (as fast as possible, real time, or N times real time) with confirmed delivery.
Labels go to a JSON-lines file beside, never into the events. With a labels
topic, the fraud labels are also sent there as chargebacks would come back:
each with ``label_time`` = its event's time + ``label_delay_s``, produced in
the event-time stream once the replay has passed that time (and the rest at
the end), so a replay exercises the job's label loop.
"""

from __future__ import annotations

import heapq
import json
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from apps.replay.riders import RiderModel, trip_to_event
from apps.replay.tlc import ReplayInputError, TripReadReport, ZoneTable, read_trips
from operators.event_files import row_to_event
from operators.labels import Label, encode_label

__all__ = [
    "ColumnMap",
    "ReplaySummary",
    "Replayer",
    "check_columns",
    "generic_events",
    "time_sorted",
    "tlc_events",
]

Item = tuple[float, int, bytes, bytes, str | None]
"""(event time, sequence, key, value, label): the label is a scenario name for fraud,
``LEGIT`` for an explicit negative (labelled files), or None (not labelled)."""
LEGIT = "legit"


def tlc_events(
    files: Iterable[Path], zones: ZoneTable | None, riders: RiderModel, report: TripReadReport
) -> Iterator[dict[str, Any]]:
    for path in files:
        for trip in read_trips(path, zones, report):
            yield trip_to_event(trip, riders)


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of a generic labelled file hold what (``--map user=cc_num,...``)."""

    user: str
    time: str
    amount: str
    label: str | None = None
    event_id: str | None = None
    lat: str | None = None
    lon: str | None = None
    merchant: str | None = None
    category: str | None = None
    device: str | None = None
    timezone: str = "UTC"

    @classmethod
    def parse(cls, spec: str, timezone: str = "UTC") -> ColumnMap:
        parts = [p for p in spec.split(",") if p.strip()]
        bad = [p.strip() for p in parts if "=" not in p]
        if bad:
            raise ValueError(f"--map: expected KEY=COLUMN[,...], got {bad[0]!r}")
        pairs = dict(p.split("=", 1) for p in parts)
        aliases = {"id": "event_id"}
        fields = {aliases.get(k.strip(), k.strip()): v.strip() for k, v in pairs.items()}
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"--map: unknown keys {sorted(unknown)}")
        missing = {"user", "time", "amount"} - set(fields)
        if missing:
            raise ValueError(f"--map: needs {sorted(missing)}")
        try:
            ZoneInfo(timezone)
        except (ValueError, KeyError) as exc:
            raise ValueError(
                f"--timezone: unknown time zone {timezone!r} (e.g. UTC, America/New_York)"
            ) from exc
        return cls(**fields, timezone=timezone)


def _columns_of(path: Path) -> list[str]:
    """The column names of a CSV (its header) or Parquet file."""
    import csv

    try:
        if ".parquet" in path.suffixes:
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except OSError as exc:
        raise ReplayInputError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise ReplayInputError(f"{path}: not a UTF-8 CSV or Parquet file ({exc})") from exc


def check_columns(files: Iterable[Path], columns: ColumnMap) -> None:
    """Refuse, before anything is produced, a file that lacks a column ``--map`` names
    (:class:`~apps.replay.tlc.ReplayInputError` naming the file and the column).

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "tx.csv"
    >>> _ = f.write_text("cc_num,trans_date,amt\\n1,2020-01-01 00:00:00,9.5\\n")
    >>> check_columns([f], ColumnMap.parse("user=cc_num,time=trans_date,amount=amount"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    apps.replay.tlc.ReplayInputError: .../tx.csv: no column 'amount' (--map amount=amount); it has cc_num, ...
    """
    named = {
        key: getattr(columns, key)
        for key in (
            "user",
            "time",
            "amount",
            "label",
            "event_id",
            "lat",
            "lon",
            "merchant",
            "category",
            "device",
        )
        if getattr(columns, key)
    }
    for path in files:
        have = _columns_of(path)
        for key, col in named.items():
            if col not in have:
                option = "id" if key == "event_id" else key
                listed = ", ".join(have) or "no header"
                raise ReplayInputError(f"{path}: no column {col!r} (--map {option}={col}); it has {listed}")


def generic_events(files: Iterable[Path], columns: ColumnMap) -> Iterator[tuple[dict[str, Any], bool | None]]:
    """Events and their labels from a generic labelled CSV/Parquet (e.g. Sparkov).

    A row that cannot become an event stops the replay with
    :class:`~apps.replay.tlc.ReplayInputError` naming the file, the line and the column."""
    import csv

    zone = ZoneInfo(columns.timezone)

    def rows_of(path: Path) -> Iterator[dict[str, Any]]:
        if ".parquet" in path.suffixes:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
                yield from batch.to_pylist()
        else:
            with open(path, newline="", encoding="utf-8") as f:
                yield from csv.DictReader(f)

    for path in files:
        check_columns([path], columns)
        for n, row in enumerate(rows_of(path), start=1):
            yield _generic_event(path, n, row, columns, zone)


def _timestamp(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())


def _generic_event(
    path: Path, n: int, row: dict[str, Any], columns: ColumnMap, zone: ZoneInfo
) -> tuple[dict[str, Any], bool | None]:
    def cell(col: str, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(row[col])
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayInputError(f"{path}: row {n}: column {col!r}: cannot read {row.get(col)!r}") from exc

    ts = cell(columns.time, _timestamp)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=zone)
    flat: dict[str, Any] = {
        "event_id": cell(columns.event_id, str) if columns.event_id else f"{path.stem}-{n}",
        "user_id": cell(columns.user, str),
        "amount": cell(columns.amount, float),
        "timestamp": ts.isoformat(),
    }
    for key, col in (
        ("merchant_name", columns.merchant),
        ("merchant_category", columns.category),
        ("device_id", columns.device),
    ):
        if col and row.get(col) not in (None, ""):
            flat[key] = str(row[col])
    if columns.lat and columns.lon and row.get(columns.lat) not in (None, ""):
        flat["latitude"], flat["longitude"] = cell(columns.lat, float), cell(columns.lon, float)
    label = None
    if columns.label:
        label = str(row.get(columns.label)).strip().lower() in {"1", "true", "t", "yes", "fraud"}
    return row_to_event(flat), label


# -- event-time ordering -------------------------------------------------------
_RECORD = msgspec.msgpack.Encoder()
_DECODE = msgspec.msgpack.Decoder(tuple[float, int, bytes, bytes, str | None])
_LEN = struct.Struct(">I")


def _spill(chunk: list[Item], folder: Path) -> Path:
    chunk.sort()
    path = folder / f"chunk-{len(list(folder.iterdir())):05d}.bin"
    with open(path, "wb") as f:
        for item in chunk:
            data = _RECORD.encode(item)
            f.write(_LEN.pack(len(data)))
            f.write(data)
    return path


def _read_spill(f: IO[bytes]) -> Iterator[Item]:
    while header := f.read(_LEN.size):
        yield _DECODE.decode(f.read(_LEN.unpack(header)[0]))


def time_sorted(items: Iterable[Item], chunk_size: int = 500_000) -> tuple[int, Iterator[Item]]:
    """Sort by event time with bounded memory; returns the count and the ordered items."""
    chunk: list[Item] = []
    spills: list[Path] = []
    folder = Path(tempfile.mkdtemp(prefix="fraudstream-replay-"))
    total = 0
    for item in items:
        chunk.append(item)
        total += 1
        if len(chunk) >= chunk_size:
            spills.append(_spill(chunk, folder))
            chunk = []
    if not spills:
        chunk.sort()
        folder.rmdir()
        return total, iter(chunk)
    if chunk:
        spills.append(_spill(chunk, folder))

    def merged() -> Iterator[Item]:
        files = [open(p, "rb") for p in spills]  # noqa: SIM115
        try:
            yield from heapq.merge(*(_read_spill(f) for f in files))
        finally:
            for f in files:
                f.close()
            for p in spills:
                p.unlink(missing_ok=True)
            folder.rmdir()

    return total, merged()


def to_items(pairs: Iterable[tuple[dict[str, Any], str | None]]) -> Iterator[Item]:
    for seq, (event, label) in enumerate(pairs):
        ts = datetime.fromisoformat(event["timestamp"]).timestamp()
        yield (
            ts,
            seq,
            str(event["user_id"]).encode(),
            json.dumps(event, separators=(",", ":")).encode(),
            label,
        )


# -- producing -----------------------------------------------------------------
@dataclass
class ReplaySummary:
    produced: int = 0
    labelled: int = 0
    first_event: float | None = None
    last_event: float | None = None
    seconds: float = 0.0
    interrupted: bool = False
    scenarios: dict[str, int] = field(default_factory=dict)
    labels_sent: int = 0


class Replayer:
    """Produce ordered items at a speed factor, writing labels alongside."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        speed: float = 0.0,
        client_config: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        labels_topic: str | None = None,
        label_delay_s: float = 7 * 86_400.0,
        label_source: str = "chargeback",
    ) -> None:
        self.topic, self.speed, self.clock, self.sleep = topic, speed, clock, sleep
        self.labels_topic, self.label_delay_s, self.label_source = labels_topic, label_delay_s, label_source
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 10,
                "acks": "all",
                "compression.type": "lz4",
                **(client_config or {}),
            }
        )
        self.errors: list[KafkaError] = []

    def _report(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.errors.append(err)

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=self._report)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _release(self, due: list[tuple[float, str]], until: float, summary: ReplaySummary) -> None:
        """Send the labels whose time has come (all of them with ``until`` = inf)."""
        while due and due[0][0] <= until and self.labels_topic is not None:
            release, event_id = heapq.heappop(due)
            label = Label(event_id, True, datetime.fromtimestamp(release, UTC), self.label_source)
            self._send(self.labels_topic, *encode_label(label))
            summary.labels_sent += 1

    def run(
        self,
        items: Iterable[Item],
        labels: IO[str] | None,
        limit: int | None = None,
        progress: Callable[[int], None] = lambda _: None,
    ) -> ReplaySummary:
        summary = ReplaySummary()
        due: list[tuple[float, str]] = []
        began = self.clock()
        try:
            for ts, _seq, key, value, label in items:
                if limit is not None and summary.produced >= limit:
                    break
                self._release(due, ts, summary)
                if summary.first_event is None:
                    summary.first_event = ts
                if self.speed > 0:
                    ahead = (ts - summary.first_event) / self.speed - (self.clock() - began)
                    if ahead > 0.002:
                        self.sleep(ahead)
                self._send(self.topic, key, value)
                summary.produced += 1
                summary.last_event = ts
                if label is not None:
                    fraud = label != LEGIT
                    event_id = json.loads(value)["event_id"]
                    if labels is not None:
                        labels.write(
                            json.dumps({"event_id": event_id, "is_fraud": fraud, "scenario": label}) + "\n"
                        )
                    summary.labelled += fraud
                    if fraud:
                        summary.scenarios[label] = summary.scenarios.get(label, 0) + 1
                        if self.labels_topic is not None:
                            heapq.heappush(due, (ts + self.label_delay_s, event_id))
                if summary.produced % 1000 == 0:
                    self.producer.poll(0)
                    progress(1000)
            self._release(due, float("inf"), summary)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            remaining = self.producer.flush(60)
            progress(summary.produced % 1000)
            summary.seconds = self.clock() - began
        if remaining or self.errors:
            error = self.errors[0] if self.errors else "flush timed out"
            raise RuntimeError(
                f"{len(self.errors) + remaining} of {summary.produced + summary.labels_sent} messages "
                f"were not delivered to {self.topic!r}"
                f"{' or ' + repr(self.labels_topic) if self.labels_topic else ''}: {error}"
            )
        return summary
