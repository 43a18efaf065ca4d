"""Data commands of the CLI: replay, produce, alerts, evaluate (registered in apps.cli)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flows.config import ConfigError, ConfigSource, Settings, load_config, redact_url

if TYPE_CHECKING:
    from apps.replay.injection import InjectionConfig
    from apps.replay.riders import RiderModel
    from apps.replay.stream import ColumnMap, ReplaySummary
    from apps.replay.tlc import TripReadReport

console = Console(soft_wrap=True)  # a line a script reads is never broken at 80 columns
err_console = Console(stderr=True, soft_wrap=True)
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: $FRAUDSTREAM_CONFIG, else ./fraudstream.yaml if present, "
        "else the built-in defaults)",
    ),
]


def plural(n: int, word: str) -> str:
    """``1 label``, ``2 labels``, ``1,000 labels``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def error_line(message: str) -> None:
    """``error: message``, one line on stderr."""
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, ``error: message``, then exit with ``code`` (no traceback)."""
    error_line(message)
    raise typer.Exit(code)


def config_or_exit(config: Path | None) -> tuple[Settings, ConfigSource]:
    """Validated settings and the file they came from (said on stderr), or a
    message naming the bad field and exit status 2."""
    try:
        settings, source = load_config(config)
    except ConfigError as exc:
        fail(str(exc), 2)
    err_console.print(f"config: {escape(str(source))}", style="dim", highlight=False, soft_wrap=True)
    return settings, source


def settings_or_exit(config: Path | None) -> Settings:
    """:func:`config_or_exit` without the source."""
    return config_or_exit(config)[0]


@contextlib.contextmanager
def service_errors(settings: Settings) -> Iterator[None]:
    """An unreachable broker or database, or a taken port, as one line on stderr and
    exit status 1 instead of a traceback."""
    import psycopg

    from flows.runner import PortInUse, RecoveryMismatch
    from infra.topics import KafkaUnreachable

    try:
        yield
    except (KafkaUnreachable, PortInUse, RecoveryMismatch) as exc:
        fail(str(exc))
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"cannot reach PostgreSQL at {redact_url(settings.database_url)} ({reason})")


def reach_kafka_or_exit(settings: Settings) -> None:
    """Exit with ``cannot reach Kafka at HOST:PORT (...)`` within seconds when no broker answers."""
    from infra.topics import reach_kafka

    with service_errors(settings):
        reach_kafka(settings.kafka.bootstrap_servers, settings.kafka.client_config)


def _rates(inject_rate: float, rate: list[str]) -> dict[str, float]:
    from apps.replay.injection import SCENARIOS

    rates = dict.fromkeys(SCENARIOS, inject_rate)
    for spec in rate:
        name, _, value = spec.partition("=")
        if name not in rates:
            raise typer.BadParameter(
                f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}", param_hint="--rate"
            )
        rates[name] = float(value)
    return rates


TRIP_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def expand_folders(paths: list[Path]) -> list[Path]:
    """Files as given; a folder becomes its trip files in name order (TLC names sort by month)."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise typer.BadParameter(f"{p}: no such file or folder")
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(TRIP_SUFFIXES))
            if not found:
                raise typer.BadParameter(f"{p} holds no {', '.join(TRIP_SUFFIXES)} files")
            out += found
        else:
            out.append(p)
    return out


def replay(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="TLC trip files (.csv, .csv.gz, .parquet; a folder means every such file in it) "
            "or, with --map, a labelled CSV/Parquet"
        ),
    ] = None,
    config: ConfigOpt = None,
    zones: Annotated[Path | None, typer.Option(help="TLC taxi_zone_lookup.csv (zone names)")] = None,
    centroids: Annotated[
        Path | None, typer.Option(help="zone centroids CSV: LocationID, latitude, longitude")
    ] = None,
    synthetic: Annotated[
        int, typer.Option(min=0, help="replay N generated TLC-shaped trips instead of files")
    ] = 0,
    column_map: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="generic labelled file: user=COL,time=COL,"
            "amount=COL[,label=,id=,lat=,lon=,merchant=,category=,device=]",
        ),
    ] = None,
    timezone: Annotated[str, typer.Option(help="time zone of naive times in --map files")] = "UTC",
    seed: Annotated[int, typer.Option(help="riders, devices and injected frauds derive from it")] = 0,
    riders: Annotated[int, typer.Option(min=1, help="size of the rider pool")] = 100_000,
    terminals: Annotated[
        int, typer.Option(min=0, help="give trips the card terminal (merchant_id) of one of N taxis; 0: none")
    ] = 0,
    compromise_rate: Annotated[
        float,
        typer.Option(
            help="with --terminals: chance a terminal is compromised in a period (all its trips fraud)"
        ),
    ] = 0.0,
    compromise_days: Annotated[float, typer.Option(help="length of a compromise period in days")] = 28.0,
    emit_labels: Annotated[
        bool, typer.Option(help="also send the fraud labels to the labels topic, --label-delay-days late")
    ] = False,
    label_delay_days: Annotated[
        float, typer.Option(help="with --emit-labels: label_time = event time + this many days")
    ] = 7.0,
    inject_rate: Annotated[float, typer.Option(help="rate of every fraud scenario (share of trips)")] = 0.002,
    rate: Annotated[list[str], typer.Option(help="per scenario, e.g. --rate card_testing=0.01")] = [],  # noqa: B006
    speed: Annotated[
        float, typer.Option(min=0.0, help="0: as fast as possible; 1: real time; N: N x real time")
    ] = 0.0,
    limit: Annotated[int | None, typer.Option(min=1, help="stop after N events")] = None,
    labels_out: Annotated[Path, typer.Option(help="labels file (JSON lines)")] = Path("replay-labels.jsonl"),
) -> None:
    """Replay NYC taxi trips (or a labelled CSV/Parquet) to the transactions topic in event-time order."""
    from apps.replay.injection import InjectionConfig
    from apps.replay.riders import RiderModel
    from apps.replay.stream import ColumnMap, Replayer, check_columns
    from apps.replay.tlc import TripReadReport
    from infra.topics import ensure_topics

    settings = settings_or_exit(config)
    k = settings.kafka
    report = TripReadReport()
    files = expand_folders(files or [])
    if not files and not synthetic:
        raise typer.BadParameter("give trip files or --synthetic N")
    if compromise_rate and not terminals:
        raise typer.BadParameter(
            "needs --terminals N (the terminals to compromise)", param_hint="--compromise-rate"
        )
    try:
        injection = InjectionConfig(seed, _rates(inject_rate, rate), compromise_rate, compromise_days)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        source = ColumnMap.parse(column_map, timezone) if column_map else None
        if source is not None:
            check_columns(files, source)
        pairs = _replay_pairs(
            files, source, zones, centroids, synthetic, RiderModel(seed, riders, terminals), injection, report
        )
    except ValueError as exc:  # --map, --timezone, or a file they or --zones/--centroids name
        fail(str(exc), 2)
    if label_delay_days < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--label-delay-days")
    topics = {k.transactions_topic: k.partitions}
    if emit_labels:
        topics[k.labels_topic] = k.partitions
        if k.partitions > 1 and speed == 0:
            console.print(
                f"[yellow]warning:[/] {k.partitions} partitions at full speed: merchant risk windows "
                "see every partition, whose event times drift apart by days in a fast replay; "
                "use one partition (FRAUDSTREAM__KAFKA__PARTITIONS=1) or --speed (docs/labels.md)"
            )
    with service_errors(settings):
        ensure_topics(k.bootstrap_servers, topics, k.client_config)
    total, ordered = _time_sorted_or_exit(pairs)
    if report.rows:
        console.print(
            f"read {report.rows:,} trips: {report.trips:,} kept; dropped {report.dropped or 'none'}; "
            f"kept but odd {report.kept_odd or 'none'}"
        )
    replayer = Replayer(
        k.bootstrap_servers,
        k.transactions_topic,
        speed,
        k.client_config,
        labels_topic=k.labels_topic if emit_labels else None,
        label_delay_s=label_delay_days * 86_400.0,
    )
    target = min(total, limit) if limit is not None else total
    with (
        open(labels_out, "w") as labels,
        Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("replay", total=target, rate="")
        began = time.monotonic()

        def advance(n: int) -> None:
            progress.advance(task, n)
            done = progress.tasks[0].completed
            progress.update(task, rate=f"{done / max(time.monotonic() - began, 1e-9):,.0f} ev/s")

        summary = replayer.run(ordered, labels, limit, advance)
    _print_summary(summary, target, labels_out, k.labels_topic if emit_labels else None, label_delay_days)
    if summary.interrupted:
        raise typer.Exit(130)


def _time_sorted_or_exit(pairs: Iterator[tuple[dict[str, Any], str | None]]) -> tuple[int, Iterator[Any]]:
    """Read every input and order it by event time; an unreadable file or row is one line and exit 2."""
    from apps.replay.stream import time_sorted, to_items
    from apps.replay.tlc import ReplayInputError

    try:
        with console.status("reading and ordering by event time..."):
            return time_sorted(to_items(pairs))
    except ReplayInputError as exc:
        fail(str(exc), 2)
    except OSError as exc:
        fail(f"{exc.filename or 'input'}: cannot read it ({exc.strerror or exc})", 2)


def _print_summary(
    summary: ReplaySummary, target: int, labels_out: Path, labels_topic: str | None, delay_days: float
) -> None:
    span = ""
    if summary.first_event is not None and summary.last_event is not None:
        fmt = "%Y-%m-%d %H:%M"
        span = (
            f", event time {time.strftime(fmt, time.gmtime(summary.first_event))} → "
            f"{time.strftime(fmt, time.gmtime(summary.last_event))} UTC"
        )
    verb = "[yellow]interrupted[/] after" if summary.interrupted else "replayed"
    console.print(
        f"{verb} {summary.produced:,} of {target:,} events in {summary.seconds:.1f} s "
        f"({summary.produced / max(summary.seconds, 1e-9):,.0f} ev/s){span}"
    )
    console.print(f"labels: {summary.labelled:,} frauds {summary.scenarios or ''} -> {labels_out}")
    if labels_topic is not None:
        console.print(
            f"sent {summary.labels_sent:,} fraud labels to {labels_topic} "
            f"(label_time = event time + {delay_days:g} days)"
        )


def _replay_pairs(
    files: list[Path],
    columns: ColumnMap | None,
    zones: Path | None,
    centroids: Path | None,
    synthetic: int,
    riders: RiderModel,
    injection: InjectionConfig,
    report: TripReadReport,
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(event, label) pairs: a generic labelled file, or TLC/generated trips with injected frauds."""
    from apps.replay.injection import inject
    from apps.replay.riders import trip_to_event
    from apps.replay.stream import LEGIT, generic_events, tlc_events
    from apps.replay.tlc import ZoneTable
    from apps.replay.workload import generate_trips

    if columns is not None:
        return (
            (ev, (None if lab is None else (LEGIT if not lab else "labelled")))
            for ev, lab in generic_events(files, columns)
        )
    table = ZoneTable.load(zones, centroids) if (zones or centroids) else None
    base = (
        (trip_to_event(t, riders) for t in generate_trips(synthetic, riders.seed))
        if synthetic
        else tlc_events(files, table, riders, report)
    )
    return inject(base, injection)


def produce(
    source: Annotated[
        Path | None, typer.Argument(help="JSON-lines file of events; stdin when omitted")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Produce JSON-lines events (one per line) to the transactions topic, keyed by user_id."""
    from apps.produce import produce_all

    settings = settings_or_exit(config)
    try:
        stream = open(source, "rb") if source else sys.stdin.buffer  # noqa: SIM115
    except OSError as exc:
        fail(f"{source}: cannot read it ({exc.strerror})", 2)
    reach_kafka_or_exit(settings)

    unkeyed = 0

    def messages() -> Iterator[tuple[bytes | None, bytes]]:
        nonlocal unkeyed
        for raw in stream:
            line = raw.strip()
            if not line:
                continue
            try:
                key: bytes | None = str(json.loads(line)["user_id"]).encode()
            except (ValueError, KeyError, TypeError):
                key = None  # the job sends it to the dead-letter topic with the reason
                unkeyed += 1
            yield key, line

    try:
        sent = produce_all(
            settings.kafka.bootstrap_servers,
            settings.kafka.transactions_topic,
            messages(),
            settings.kafka.client_config,
        )
    except RuntimeError as exc:  # not acknowledged: the broker went away meanwhile
        fail(str(exc))
    odd = f" ({unkeyed:,} not JSON with a user_id: the job dead-letters what it cannot decode)"
    odd = odd if unkeyed else ""
    console.print(f"produced {plural(sent, 'event')} to {settings.kafka.transactions_topic}{odd}")


def label(
    event_ids: Annotated[list[str] | None, typer.Argument(help="event ids to label (or use --file)")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="labels as JSON lines or CSV: event_id, is_fraud[, label_time, source]"
        ),
    ] = None,
    fraud: Annotated[
        bool, typer.Option("--fraud/--legit", help="for EVENT_IDS: fraud or confirmed legit")
    ] = True,
    source: Annotated[str, typer.Option(help="for EVENT_IDS: chargeback, analyst, ...")] = "analyst",
    label_time: Annotated[
        str | None, typer.Option(help="for EVENT_IDS: when it became known (RFC 3339); default now")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Send fraud labels to the labels topic: the job stores them and feeds its risk windows."""
    from datetime import UTC, datetime

    from apps.produce import produce_all
    from infra.topics import ensure_topics
    from operators.events import InvalidEvent
    from operators.labels import Label, decode_label, encode_label

    settings = settings_or_exit(config)
    when = label_time or datetime.now(UTC).isoformat()
    raw: list[tuple[str, bytes]] = [
        (
            f"argument {eid!r}",
            json.dumps({"event_id": eid, "is_fraud": fraud, "label_time": when, "source": source}).encode(),
        )
        for eid in event_ids or []
    ]
    if file is not None:
        raw += list(_label_records(file, when))
    if not raw:
        raise typer.BadParameter("give EVENT_IDS or --file")
    labels: list[Label] = []
    bad = 0
    for where, value in raw:
        result = decode_label(value)
        if isinstance(result, InvalidEvent):
            bad += 1
            console.print(f"[red]{where}: {result.error}[/]", highlight=False)
        else:
            labels.append(result)
    k = settings.kafka
    with service_errors(settings):
        ensure_topics(k.bootstrap_servers, {k.labels_topic: k.partitions}, k.client_config)
    sent = produce_all(
        k.bootstrap_servers, k.labels_topic, (encode_label(lab) for lab in labels), k.client_config
    )
    console.print(
        f"sent {plural(sent, 'label')} to {k.labels_topic}" + (f"; {bad:,} invalid, not sent" if bad else "")
    )
    raise typer.Exit(1 if bad else 0)


def _label_records(path: Path, default_time: str) -> Iterator[tuple[str, bytes]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        if path.suffix.lower() == ".csv":
            for n, row in enumerate(csv.DictReader(f), start=2):
                record: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
                if "is_fraud" in record:
                    text = str(record["is_fraud"]).strip().lower()
                    record["is_fraud"] = (
                        True
                        if text in {"1", "true", "t", "yes"}
                        else False
                        if text in {"0", "false", "f", "no"}
                        else text
                    )
                record.setdefault("label_time", default_time)
                yield f"{path}:{n}", json.dumps(record).encode()
        else:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    yield f"{path}:{n}", line.encode()
                    continue
                if isinstance(record, dict):
                    record.setdefault("label_time", default_time)
                yield f"{path}:{n}", json.dumps(record).encode()


def alerts(
    config: ConfigOpt = None,
    from_beginning: Annotated[bool, typer.Option(help="read the topic from its start")] = False,
    limit: Annotated[int | None, typer.Option(help="stop after N alerts")] = None,
    timeout: Annotated[float | None, typer.Option(help="stop after N seconds without alerts")] = None,
) -> None:
    """Tail the alerts topic as a readable table."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    settings = settings_or_exit(config)
    reach_kafka_or_exit(settings)
    k = settings.kafka
    consumer = Consumer(
        {
            "bootstrap.servers": k.bootstrap_servers,
            "group.id": "fraudstream-alerts-cli",
            "enable.auto.commit": False,
            **k.client_config,
        }
    )
    partitions = consumer.list_topics(k.alerts_topic, timeout=10).topics[k.alerts_topic].partitions
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(k.alerts_topic, p, start) for p in partitions])
    seen, idle_since = 0, time.monotonic()
    header = f"{'scored at':19}  {'level':6} {'score':>5}  {'user':18} {'amount':>12}  rules / reasons"
    console.print(header, style="bold")
    try:
        while limit is None or seen < limit:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if timeout is not None and time.monotonic() - idle_since > timeout:
                    break
                continue
            idle_since = time.monotonic()
            a = json.loads(msg.value() or b"{}")
            color = "red" if a["risk_level"] == "HIGH" else "yellow"
            ev = a["event"]
            console.print(
                f"{a['scored_at'][:19]}  [{color}]{a['risk_level']:6}[/] {a['fraud_score']:5.1f}  "
                f"{a['user_id'][:18]:18} {ev['amount']:>9.2f} {ev.get('currency', 'USD')}  "
                f"{', '.join(a['triggered_rules'])}: {'; '.join(a['reasons'])}",
                highlight=False,
            )
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _pairs(spec: str | None, option: str, cast: Any) -> dict[str, Any]:
    """``a=1,b=2`` as a dict, or a clear error naming the option."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError(part)
            out[name.strip()] = cast(value)
        except ValueError as exc:
            raise typer.BadParameter(f"expected NAME=VALUE[,...], got {part!r}", param_hint=option) from exc
    return out


def evaluate(
    labels: Annotated[
        list[Path] | None,
        typer.Option(
            "--labels",
            "-l",
            help="labels file(s): JSON lines or CSV with event_id, is_fraud[, scenario]; "
            "default: the labels table",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="report folder")] = Path("evaluation"),
    config: ConfigOpt = None,
    k: Annotated[int, typer.Option(help="cards per day for card precision@k")] = 100,
    prequential: Annotated[
        bool,
        typer.Option(help="also: train on the past with the labels known then, test on the next window"),
    ] = False,
    label_delay_days: Annotated[
        float, typer.Option(help="--prequential: days left out before each test window")
    ] = 7.0,
    test_days: Annotated[float, typer.Option(help="--prequential: length of a test window")] = 7.0,
    train_days: Annotated[
        float | None, typer.Option(help="--prequential: training window (default: all earlier history)")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="--prequential candidate: ensemble weights, e.g. rules=0.5,supervised=2"),
    ] = None,
    points: Annotated[
        str | None,
        typer.Option(help="--prequential candidate: rule points, e.g. compromised_merchant=60"),
    ] = None,
) -> None:
    """Join scored_events with labels; write report.md, report.json and plots (and prequential.md)."""
    from apps.evaluate import LabelFileError, db_labels, fetch_scored, load_labels, write_report
    from apps.evaluate import evaluate as run_evaluation

    settings = settings_or_exit(config)
    import psycopg

    with console.status("reading scored events and labels..."):
        try:
            label_map = load_labels(labels) if labels else db_labels(settings.database_url)
            scored = fetch_scored(settings.database_url)
        except LabelFileError as exc:
            fail(str(exc), 2)
        except psycopg.Error as exc:
            fail(f"cannot read scored_events or labels: {str(exc).splitlines()[0]}", 2)
    if not scored:
        fail("scored_events is empty", 2)
    report = run_evaluation(
        scored, label_map, settings.ensemble.medium_threshold, settings.ensemble.high_threshold, k
    )
    files = write_report(report, scored, label_map, out)
    table = Table(title="evaluation", show_header=False)
    table.add_row("events / frauds", f"{report['events']:,} / {report['frauds']:,}")
    table.add_row(
        "ROC-AUC / average precision",
        f"{report['roc_auc'] or 0:.4f} / {report['average_precision'] or 0:.4f}",
    )
    for name, t in report["thresholds"].items():
        table.add_row(
            name,
            f"precision {t['precision'] or 0:.3f}  recall {t['recall'] or 0:.3f}  FPR {t['fpr'] or 0:.5f}",
        )
    table.add_row(f"card precision@{k}", f"{report['card_precision_at_k']['mean'] or 0:.4f}")
    console.print(table)
    if prequential:
        files += _prequential(
            settings,
            label_map if labels else None,
            out,
            (label_delay_days, test_days, train_days),
            _pairs(weights, "--weights", float),
            _pairs(points, "--points", int),
        )
    console.print("wrote " + ", ".join(str(f) for f in files))


def _prequential(
    settings: Settings,
    file_labels: dict[str, tuple[bool, str]] | None,
    out: Path,
    windows: tuple[float, float, float | None],
    weights: dict[str, float],
    points: dict[str, int],
) -> list[Path]:
    from apps.evaluate import fetch_history, prequential_report, write_prequential
    from models.champion import supervised_columns
    from models.prequential import PrequentialConfig
    from operators.ensemble import EnsembleConfig

    delay, test, train = windows
    rules = {name: getattr(settings.rules, name) for name in type(settings.rules).model_fields}
    unknown = set(points) - set(rules)
    if unknown:
        raise typer.BadParameter(f"unknown rules {sorted(unknown)}", param_hint="--points")
    try:
        config = PrequentialConfig(delay_days=delay, test_days=test, train_days=train)
        EnsembleConfig(weights={**settings.ensemble.weights, **weights})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    risk = settings.entity_risk
    columns = supervised_columns(risk.entities if risk.enabled else (), risk.windows_days)
    with console.status("prequential evaluation: retraining for every test window..."):
        history = fetch_history(settings.database_url, file_labels, delay)
        report = prequential_report(
            history,
            columns,
            config,
            settings.ensemble,
            {name: r.points for name, r in rules.items() if r.enabled},
            frozenset(name for name, r in rules.items() if r.enabled and r.force_high),
            weights,
            points,
            file_labels,
        )
    table = Table(title=f"prequential (label delay {delay:g} d, test windows {test:g} d)")
    for col in ("score", "pooled AP", "mean AP per window", "windows"):
        table.add_column(col, justify="left" if col == "score" else "right")
    for name, v in report["summary"].items():
        table.add_row(name, f"{v['pooled_ap'] or 0:.4f}", f"{v['mean_fold_ap'] or 0:.4f}", str(v["folds"]))
    console.print(table)
    if not report["summary"]:
        console.print("[yellow]no test window had known frauds to train on and frauds to test[/]")
    return write_prequential(report, out)


def explain(
    config: ConfigOpt = None,
    idle_exit: Annotated[float | None, typer.Option(help="exit after N seconds without alerts")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="METRICS_PORT",
            min=0,
            max=65535,
            help="/metrics port (default: explainer.metrics_port, 9120, beside the job's 9108; 0: none)",
        ),
    ] = None,
) -> None:
    """Explain alerts with Claude (template fallback) into alert_explanations and alerts.explained."""
    import logging
    import signal
    import threading

    from apps.explainer import run_explainer
    from flows.runner import serve_metrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_or_exit(config)
    port = settings.explainer.metrics_port if metrics_port is None else metrics_port
    hint = (
        "explainer.metrics_port (FRAUDSTREAM__EXPLAINER__METRICS_PORT), METRICS_PORT or --metrics-port "
        "to a free port, or 0 for no /metrics"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with service_errors(settings):
        if port:
            from operators.metrics import prime_explainer

            prime_explainer()
            serve_metrics(port, settings.metrics.host, hint)
        count = run_explainer(settings, stop, idle_exit)
    console.print(f"explained {plural(count, 'alert')}")
