"""Start the real job (and the gateway) as subprocesses: the one launcher that
the demo, the tests and the benchmarks use.

``start_job(settings, processes, log_dir)`` runs ``fraudstream run --processes
N`` with those settings and returns once every process serves ``/metrics``; the
returned :class:`JobProcess` stops it gently or with ``kill -9``, reads its
metrics and waits for rows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from flows.config import Settings
from infra.stack import free_port

__all__ = [
    "JobExited",
    "JobProcess",
    "Samples",
    "free_port_range",
    "job_env",
    "start_gateway",
    "start_job",
    "stop_process",
]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class JobExited(RuntimeError):
    """The job (or gateway) process ended when it should be running; the message holds its log tail."""


def job_env(settings: Settings, metrics_port: int, **extra: str) -> dict[str, str]:
    """The environment that gives a job (or gateway) process these settings."""
    k, s = settings.kafka, settings.scoring
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
        "FRAUDSTREAM__KAFKA__LABELS_TOPIC": k.labels_topic,
        "FRAUDSTREAM__KAFKA__PARTITIONS": str(k.partitions),
        "FRAUDSTREAM__SCORING__MAX_BATCH_SIZE": str(s.max_batch_size),
        "FRAUDSTREAM__SCORING__MAX_WAIT_MS": str(s.max_wait_ms),
        **extra,
    }


def free_port_range(n: int) -> int:
    """A base port with ``n`` consecutive free ports (one ``/metrics`` per process)."""
    for _ in range(50):
        base = free_port()
        if base + n < 65535 and all(_is_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGINT, then SIGKILL to its whole session after ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class JobProcess:
    proc: subprocess.Popen[bytes]
    settings: Settings
    processes: int
    metrics_port: int
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)

    def kill9(self) -> None:
        """SIGKILL every process of the job at once (supervisor and workers)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def check_alive(self) -> None:
        """Raise :class:`JobExited` with the log's tail if the job is not running."""
        if self.proc.poll() is not None:
            raise JobExited(f"job exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")

    def wait_rows(self, expected: int, timeout_s: float = 120) -> int:
        """Rows in ``scored_events`` once there are ``expected`` (or at the timeout)."""
        deadline = time.monotonic() + timeout_s
        rows = 0
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    rows = conn.execute("SELECT count(*) FROM scored_events").fetchone()[0]  # type: ignore[index]
                except psycopg.errors.UndefinedTable:
                    rows = 0
                if rows >= expected:
                    return rows
                time.sleep(0.2)
        return rows

    def metrics(self, names: Sequence[str] = ()) -> Samples:
        """Samples summed over every process of the job; with ``names``, only those samples
        (``fraudstream_events_total``, ...): the job renders just their families, where a
        whole scrape costs it milliseconds of its worker's GIL."""
        totals: Samples = {}
        query = "?" + urllib.parse.urlencode([("name[]", n) for n in names]) if names else ""
        for i in range(self.processes):
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port + i}/metrics{query}", timeout=5
            ).read()
            for family in text_string_to_metric_families(text.decode()):
                for s in family.samples:
                    key = (s.name, tuple(sorted(s.labels.items())))
                    totals[key] = totals.get(key, 0.0) + s.value
        return totals

    def pids(self) -> list[int]:
        """The launcher and, with several processes, its workers."""
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    kids.append(int(stat.parent.name))
        return kids or [self.proc.pid]


JOB_START_S = 90.0
GATEWAY_START_S = 60.0


def start_job(
    settings: Settings,
    processes: int,
    log_dir: Path,
    *,
    metrics_port: int | None = None,
    **extra_env: str,
) -> JobProcess:
    """``fraudstream run --processes N``, returned once every process serves metrics
    (on ``metrics_port + i``; free ports when None)."""
    port = metrics_port if metrics_port is not None else free_port_range(processes)
    log = log_dir / f"job-{processes}p-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apps.cli", "run", "--processes", str(processes)],
            env=job_env(settings, port, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    job = JobProcess(proc, settings, processes, port, log)
    deadline = time.monotonic() + JOB_START_S
    while time.monotonic() < deadline:
        job.check_alive()
        try:
            job.metrics()
            return job
        except OSError:
            time.sleep(0.2)
    job.stop()
    raise JobExited(f"job did not serve metrics within {JOB_START_S:.0f} s:\n{log.read_text()[-3000:]}")


def start_gateway(settings: Settings, log_dir: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    """``fraudstream gateway`` on a free port, returned with its URL once /readyz answers 200."""
    port = free_port()
    log = log_dir / f"gateway-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apps.cli", "gateway", "--port", str(port)],
            env=job_env(settings, 0, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + GATEWAY_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise JobExited(f"gateway exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:  # noqa: S310 - our http URL
                if answer.status == 200:
                    return proc, url
        except urllib.error.HTTPError as exc:
            exc.close()  # 503 while not ready
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise JobExited(f"gateway not ready within {GATEWAY_START_S:.0f} s:\n{log.read_text()[-3000:]}")
