"""Run the real job as subprocesses against the embedded stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from flows.config import Settings
from infra.stack import free_port


def job_env(settings: Settings, metrics_port: int, **extra: str) -> dict[str, str]:
    k = settings.kafka
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "METRICS_PORT": str(metrics_port),
        "FRAUDSTREAM__KAFKA__TRANSACTIONS_TOPIC": k.transactions_topic,
        "FRAUDSTREAM__KAFKA__ALERTS_TOPIC": k.alerts_topic,
        "FRAUDSTREAM__KAFKA__DLQ_TOPIC": k.dlq_topic,
        "FRAUDSTREAM__KAFKA__DECISIONS_TOPIC": k.decisions_topic,
        "FRAUDSTREAM__KAFKA__PARTITIONS": str(k.partitions),
        **extra,
    }


@dataclass
class Job:
    proc: subprocess.Popen[bytes]
    settings: Settings
    processes: int
    metrics_port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        """SIGKILL every process of the job at once (supervisor and workers)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"job exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Samples summed over every process of the job."""
        totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for i in range(self.processes):
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port + i}/metrics", timeout=5
            ).read()
            for family in text_string_to_metric_families(text.decode()):
                for s in family.samples:
                    key = (s.name, tuple(sorted(s.labels.items())))
                    totals[key] = totals.get(key, 0.0) + s.value
        return totals


def start_job(settings: Settings, processes: int, log_dir: Path, **extra_env: str) -> Job:
    port = free_port() if processes == 1 else _free_range(processes)
    log = log_dir / f"job-{processes}p-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--processes", str(processes)],
            env=job_env(settings, port, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    job = Job(proc, settings, processes, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job.assert_alive()
        try:
            job.metrics()
            return job
        except OSError:
            time.sleep(0.2)
    job.stop()
    raise AssertionError(f"job did not serve metrics within 60 s:\n{log.read_text()[-3000:]}")


def _free_range(n: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + n < 65535 and all(_is_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range")


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_rows(job: Job, expected: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    rows = 0
    with psycopg.connect(job.settings.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            job.assert_alive()
            try:
                rows = conn.execute("SELECT count(*) FROM scored_events").fetchone()[0]  # type: ignore[index]
            except psycopg.errors.UndefinedTable:
                rows = 0
            if rows >= expected:
                return rows
            time.sleep(0.2)
    return rows


def consume(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 30
) -> list[tuple[bytes | None, dict]]:
    """Read a topic until ``expected`` records arrived (or the timeout), then 1 s more."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[bytes | None, dict]] = []
    deadline = time.monotonic() + timeout_s
    settle = None
    while time.monotonic() < deadline:
        out += [(m.key(), json.loads(m.value())) for m in consumer.consume(500, 0.2) if m.error() is None]
        if len(out) >= expected:
            settle = settle or time.monotonic() + 1.0
            if time.monotonic() > settle:
                break
    consumer.close()
    return out
