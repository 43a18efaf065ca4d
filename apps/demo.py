"""`fraudstream demo`: the whole system on the embedded stack, in one command.

Starts the broker, Postgres and Redis from wheels, runs the job, streams a
generated workload with injected fraud patterns, waits until every event is
accounted for (a row in ``scored_events`` or a record in the dead-letter
topic), and prints a summary while ``/metrics`` is live.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from apps.produce import produce_all
from apps.replay.workload import generate
from flows.config import Settings, load_settings, redact_url
from flows.launcher import JobProcess, start_job
from flows.runner import bootstrap
from infra.stack import EmbeddedStack, remove

__all__ = ["Summary", "count_topic", "detection", "run_demo", "steady_latency", "summarise", "write_config"]


@dataclass
class Summary:
    events: int
    rows: int
    dead_letters: int
    levels: dict[str, int]
    top_rules: list[tuple[str, int]]
    throughput: float
    latency_p50_ms: float
    latency_p99_ms: float
    seconds: float
    model_versions: list[str]
    caught: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per injected scenario: (events alerted MEDIUM or HIGH, events injected)."""
    flagged: dict[str, int] = field(default_factory=dict)
    """Per injected scenario: its events some rule fired on, alerted or not (a rule alone
    may score under ``ensemble.medium_threshold``: recorded on the row, not alerted)."""
    alert_precision: float | None = None
    """Share of the alerts that are injected fraud."""
    steady: tuple[float, float, float] | None = None
    """(rate/s, p50 ms, p99 ms) of produce-to-row latency at a steady rate after the burst."""


def count_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    timeout_s: float = 5.0,
    client_config: dict[str, str] | None = None,
) -> int:
    """Count a topic's records by reading it (the embedded broker's watermarks lag)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "fraudstream-count",
            "enable.auto.commit": False,
            **(client_config or {}),
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    n, idle_since = 0, time.monotonic()
    while time.monotonic() - idle_since < timeout_s:
        msgs = consumer.consume(1000, 0.2)
        good = sum(1 for m in msgs if m.error() is None)
        if good:
            n += good
            idle_since = time.monotonic()
    consumer.close()
    return n


def detection(
    settings: Settings, labels: dict[str, str]
) -> tuple[dict[str, tuple[int, int]], float | None, dict[str, int]]:
    """Per scenario (alerted, injected) of the injected events, the alerts' precision, and
    per scenario the injected events some rule fired on."""
    with psycopg.connect(settings.database_url) as conn:
        alerted = {r[0] for r in conn.execute("SELECT event_id FROM scored_events WHERE risk_level <> 'LOW'")}
        ruled = {
            r[0]
            for r in conn.execute(
                "SELECT event_id FROM scored_events WHERE jsonb_array_length(triggered_rules) > 0"
            )
        }
    caught: dict[str, tuple[int, int]] = {}
    flagged: dict[str, int] = {}
    for event_id, scenario in labels.items():
        hit, total = caught.get(scenario, (0, 0))
        caught[scenario] = (hit + (event_id in alerted), total + 1)
        flagged[scenario] = flagged.get(scenario, 0) + (event_id in ruled)
    precision = len(alerted & labels.keys()) / len(alerted) if alerted else None
    return dict(sorted(caught.items())), precision, flagged


def steady_latency(
    settings: Settings, job: JobProcess, rate: float, seconds: float, seed: int
) -> tuple[float, float, float]:
    """Produce-to-row latency at a steady ``rate`` (events/s), once the burst is scored:
    what a payment waits, without the queue a burst builds up."""
    work = generate(
        events=int(rate * seconds), users=max(10, int(rate * seconds) // 5), malformed=0, seed=seed
    )
    before = job.wait_rows(0, 1)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 0})
    began = time.monotonic()
    for i, (key, value) in enumerate(work.messages):
        time.sleep(max(0.0, began + i / rate - time.monotonic()))
        producer.produce(settings.kafka.transactions_topic, value, key)
        producer.poll(0)
    producer.flush(10)
    job.wait_rows(before + work.valid, timeout_s=60)
    ids = [json.loads(v)["event_id"] for _, v in work.messages]
    with psycopg.connect(settings.database_url) as conn:
        lag = "extract(epoch FROM written_at - ingested_at)"
        p50, p99 = conn.execute(
            f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {lag}),"
            f" percentile_cont(0.99) WITHIN GROUP (ORDER BY {lag})"
            " FROM scored_events WHERE event_id = ANY(%s)",
            (ids,),
        ).fetchone()  # type: ignore[misc]
    return rate, float(p50 or 0) * 1000, float(p99 or 0) * 1000


def summarise(settings: Settings, events: int, dead_letters: int, seconds: float) -> Summary:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM scored_events").fetchone()[0]  # type: ignore[index]
        levels: dict[str, int] = dict(
            conn.execute("SELECT risk_level, count(*) FROM scored_events GROUP BY 1").fetchall()
        )
        top = conn.execute(
            "SELECT r, count(*) FROM scored_events, jsonb_array_elements_text(triggered_rules) r "
            "GROUP BY r ORDER BY 2 DESC, 1 LIMIT 8"
        ).fetchall()
        versions = [
            r[0]
            for r in conn.execute("SELECT DISTINCT model_version FROM scored_events ORDER BY 1").fetchall()
        ]
        span, p50, p99 = conn.execute(
            "SELECT extract(epoch FROM max(written_at) - min(ingested_at)), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at)),"
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at))"
            " FROM scored_events"
        ).fetchone()  # type: ignore[misc]
    return Summary(
        events,
        rows,
        dead_letters,
        {k: levels.get(k, 0) for k in ("LOW", "MEDIUM", "HIGH")},
        top,
        rows / float(span) if span else 0.0,
        float(p50 or 0) * 1000,
        float(p99 or 0) * 1000,
        seconds,
        versions,
    )


def _keep_running(con: Any, config: Path) -> None:
    """Wait for Ctrl-C (or SIGTERM), saying how to reach the running stack."""
    con.print(
        "Job and stack keep running; Ctrl-C to stop. Review the alerts in the console "
        f"(another terminal):\n  fraudstream console --config {config}"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        con.print("stopping the job and the stack...")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def write_config(root: Path, env: Mapping[str, str], models_dir: Path) -> Path:
    """A config file that points other commands (console, gateway, label, rules) at this
    demo's stack, whose ports are picked afresh each time."""
    path = root / "fraudstream.yaml"
    doc = {
        "kafka": {"bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"]},
        "database_url": env["DATABASE_URL"],
        "redis_url": env["REDIS_URL"],
        "models": {"path": str(models_dir.resolve())},
    }
    path.write_text(
        "# Written by `fraudstream demo --keep-running`: its embedded stack.\n" + yaml.safe_dump(doc)
    )
    return path


def _train_demo_model(con: Any, models_dir: Path, events: int, users: int, seed: int) -> None:
    """Train on a separate generated day, so the demo shows all three components."""
    from models.training import TrainingConfig, train
    from operators.events import TransactionEvent, decode_event

    began = time.monotonic()
    with con.status("training a small model on generated traffic..."):
        history = generate(
            events=min(events, 10_000), users=min(users, 1_000), malformed=0, seed=seed + 1_000
        )
        decoded = [decode_event(value) for _, value in history.messages]
        result = train(
            [e for e in decoded if isinstance(e, TransactionEvent)],
            models_dir,
            TrainingConfig(epochs=15, seed=seed),
            activate=True,
        )
    con.print(
        f"Trained model version [bold]{result.version}[/] in {time.monotonic() - began:.1f} s "
        f"(autoencoder + isolation forest) -> {models_dir}"
    )


def run_demo(
    events: int,
    users: int,
    processes: int,
    seed: int,
    root: Path,
    metrics_port: int,
    keep_running: bool,
    console: object,
    show: Callable[[Summary], None] = lambda summary: None,
) -> Summary:
    from rich.console import Console
    from rich.progress import Progress

    con: Console = console  # type: ignore[assignment]
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the job and stack like Ctrl-C does
    stack = EmbeddedStack(root, {"kafka": 0, "postgres": 0, "redis": 0})
    stack.stop()
    remove(root)  # every demo starts from empty topics and an empty database
    con.print("[bold]Starting the embedded stack[/] (Tansu broker, PostgreSQL, Redis)...")
    info = stack.start()
    models_dir = root / "models"
    _train_demo_model(con, models_dir, events, users, seed)
    env = {
        **os.environ,
        **info.env(),
        "METRICS_PORT": str(metrics_port),
        "FRAUDSTREAM_MODEL_DIR": str(models_dir),
    }
    settings = load_settings(env=env)
    job: JobProcess | None = None
    try:
        bootstrap(settings)
        con.print(
            f"  Kafka {env['KAFKA_BOOTSTRAP_SERVERS']}  Postgres {redact_url(env['DATABASE_URL'])}  "
            f"Redis {redact_url(env['REDIS_URL'])}"
        )
        job = start_job(
            settings, processes, root, metrics_port=metrics_port, FRAUDSTREAM_MODEL_DIR=str(models_dir)
        )
        log_path = job.log
        urls = ", ".join(f"http://127.0.0.1:{metrics_port + i}/metrics" for i in range(processes))
        con.print(f"[bold]Job started[/] ({processes} process(es)); metrics on {urls}; log {log_path}")
        workload = generate(events=events, users=users, seed=seed)
        started = time.monotonic()
        with Progress(console=con, transient=True) as progress:
            task = progress.add_task("producing", total=len(workload.messages))
            produce_all(
                settings.kafka.bootstrap_servers,
                settings.kafka.transactions_topic,
                workload.messages,
                progress=lambda n: progress.advance(task, n),
            )
        con.print(
            f"Produced {len(workload.messages):,} events "
            f"({workload.malformed} malformed, {len(workload.labels)} injected fraud)"
        )
        with con.status("waiting for the job to score every event..."):
            rows = job.wait_rows(workload.valid, timeout_s=300)
        elapsed = time.monotonic() - started
        dead = count_topic(
            settings.kafka.bootstrap_servers, settings.kafka.dlq_topic, settings.kafka.partitions
        )
        summary = summarise(settings, len(workload.messages), dead, elapsed)
        summary.caught, summary.alert_precision, summary.flagged = detection(settings, workload.labels)
        if rows < workload.valid:
            con.print(f"[red]only {rows} of {workload.valid} events were scored in time[/]")
        else:
            with con.status("measuring latency at a steady 200 events/s..."):
                summary.steady = steady_latency(settings, job, 200.0, 5.0, seed + 7)
        show(summary)
        if keep_running:
            _keep_running(con, write_config(root, env, models_dir))
        return summary
    finally:
        if job is not None:
            job.stop()
        stack.stop()
