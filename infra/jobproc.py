"""Run the real job (and the gateway) as subprocesses against a stack, with
settings isolated per run: unique topics and a fresh database. Shared by the
integration tests and the benchmarks."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from flows.config import Settings, load_settings
from infra.stack import StackInfo, free_port

__all__ = [
    "JobProcess",
    "Samples",
    "free_port_range",
    "isolated_settings",
    "job_env",
    "start_gateway",
    "start_job",
    "stop_process",
]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
_counter = itertools.count()


def isolated_settings(info: StackInfo, name: str, partitions: int = 4, **overrides: Any) -> Settings:
    """Settings with unique topic names and a fresh database; ``overrides`` by
    ``section__key`` path (e.g. ``scoring__max_wait_ms=50``)."""
    tag = f"{name[:30]}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
    tag = "".join(c if c.isalnum() or c in "-." else "-" for c in tag).lower()
    db = "t_" + uuid.uuid4().hex[:12]
    env = info.env()
    admin = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{db}"
    env["METRICS_PORT"] = "0"
    data = load_settings(env=env).model_dump()
    data["kafka"].update(
        transactions_topic=f"tx-{tag}",
        alerts_topic=f"alerts-{tag}",
        dlq_topic=f"dlq-{tag}",
        decisions_topic=f"decisions-{tag}",
        labels_topic=f"labels-{tag}",
        partitions=partitions,
    )
    for key, value in overrides.items():
        node = data
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return Settings.model_validate(data)


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

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"job exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")

    def metrics(self) -> Samples:
        """Samples summed over every process of the job."""
        totals: Samples = {}
        for i in range(self.processes):
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port + i}/metrics", timeout=5
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


def start_job(settings: Settings, processes: int, log_dir: Path, **extra_env: str) -> JobProcess:
    """``fraudstream run --processes N``, returned once every process serves metrics."""
    port = free_port_range(processes)
    log = log_dir / f"job-{processes}p-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--processes", str(processes)],
            env=job_env(settings, port, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    job = JobProcess(proc, settings, processes, port, log)
    deadline = time.monotonic() + JOB_START_S
    while time.monotonic() < deadline:
        job.assert_alive()
        try:
            job.metrics()
            return job
        except OSError:
            time.sleep(0.2)
    job.stop()
    raise AssertionError(f"job did not serve metrics within {JOB_START_S:.0f} s:\n{log.read_text()[-3000:]}")


def start_gateway(settings: Settings, log_dir: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    """``fraudstream gateway`` on a free port, returned with its URL once /readyz answers 200."""
    port = free_port()
    log = log_dir / f"gateway-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "gateway", "--port", str(port)],
            env=job_env(settings, 0, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + GATEWAY_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited:\n{log.read_text()[-3000:]}")
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
    raise AssertionError(f"gateway not ready within {GATEWAY_START_S:.0f} s:\n{log.read_text()[-3000:]}")
