"""Run the job as one or several Bytewax processes.

Each process serves ``/metrics`` on ``METRICS_PORT + process_id``. Processes
form one Bytewax cluster over loopback addresses and share the topic
partitions between them (scale with processes, not threads: workers in one
process share the GIL).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from flows.config import Settings, load_settings
from infra.migrations import apply_migrations
from infra.stack import free_port
from infra.topics import ensure_topics

__all__ = ["PortInUse", "bootstrap", "check_port", "run_job", "run_member", "run_process", "serve_metrics"]

log = logging.getLogger(__name__)

JOB_PORT_HINT = (
    "metrics.port or METRICS_PORT to a free port (process i serves port + i), or 0 for no /metrics"
)


class PortInUse(RuntimeError):
    """A port this process must listen on is taken; the message names it and the setting to change."""


def _in_use(what: str, host: str, port: int, hint: str) -> PortInUse:
    return PortInUse(f"{what} port {host}:{port} is already in use by another process: set {hint}")


def check_port(host: str, port: int, what: str, hint: str) -> None:
    """Raise :class:`PortInUse` if ``host:port`` cannot be bound now (0 is always free)."""
    if not port:
        return
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise _in_use(what, host, port, hint) from exc


def serve_metrics(port: int, host: str, hint: str = JOB_PORT_HINT) -> None:
    """Serve ``/metrics`` on ``host:port`` (nothing for 0), or :class:`PortInUse`."""
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise _in_use("metrics", host, port, hint) from exc


def bootstrap(settings: Settings, init_recovery: bool = True) -> None:
    """Create missing topics and apply SQL migrations before consuming (both
    safe to run from several processes at once)."""
    k = settings.kafka
    created = ensure_topics(
        k.bootstrap_servers,
        {
            k.transactions_topic: k.partitions,
            k.alerts_topic: k.partitions,
            k.dlq_topic: k.partitions,
            **({k.decisions_topic: k.partitions} if k.publish_decisions else {}),
            **({k.labels_topic: k.partitions} if settings.labels.enabled else {}),
        },
        k.client_config,
    )
    if created:
        log.info("created topics %s", ", ".join(created))
    applied = apply_migrations(settings.database_url)
    if applied:
        log.info("applied migrations %s", ", ".join(applied))
    if init_recovery:
        prepare_recovery(settings)


def prepare_recovery(settings: Settings) -> Path | None:
    """Create the recovery partitions in an empty recovery directory (once, before any process)."""
    from bytewax.recovery import init_db_dir

    if settings.recovery.dir is None:
        log.warning(
            "no recovery directory (recovery.dir / FRAUDSTREAM_RECOVERY_DIR): a restart re-reads "
            "the topic from kafka.start_offset and per-user state starts empty"
        )
        return None
    folder = Path(settings.recovery.dir)
    folder.mkdir(parents=True, exist_ok=True)
    fresh = not _has_partitions(folder)
    # The record first: a cluster member that sees the partitions then sees the record.
    check_layout(folder, settings, fresh)
    if fresh:
        init_db_dir(folder, settings.recovery.partitions)
        log.info("created %d recovery partitions in %s", settings.recovery.partitions, folder)
    else:
        log.info("resuming from the recovery partitions in %s", folder)
    return folder


def _has_partitions(folder: Path) -> bool:
    return any(folder.glob("part-*.sqlite3"))


LAYOUT_FILE = "fraudstream-layout.json"
"""What the state in a recovery directory was keyed by, written beside its partitions."""


class RecoveryMismatch(ValueError):
    """The recovery directory holds state keyed differently from what the settings ask
    for; the message names the setting."""


def check_layout(folder: Path, settings: Settings, fresh: bool = False) -> None:
    """Stop when ``folder``'s state was sharded by another ``state.shards``, then record
    the layout (a directory from before the record is taken to match).

    A user's shard is ``crc32(user) % state.shards``: restored under another count, each
    shard's users would sit where their events no longer go, and those users would start
    afresh, their remembered event ids too (a re-used id would pass). The shards' names
    (``state.shard_names``) are the directory's, whatever the settings say: a directory
    from before the names were recorded holds its state under the numbers, and a
    fresh one takes the settings' (see :func:`recorded_layout`)."""
    stored = {} if fresh else _stored_layout(folder)
    shards = settings.state.shards
    if stored.get("state.shards", shards) != shards:
        raise RecoveryMismatch(
            f"state.shards: the recovery directory {folder} holds state in {stored['state.shards']} shards "
            f"and this configuration asks for {shards}; set state.shards to {stored['state.shards']}, or "
            "start from an empty recovery directory (per-user state then starts empty)"
        )
    names = settings.state.shard_names if fresh else _stored_names(stored)
    if names != settings.state.shard_names:
        log.info("state.shard_names: the recovery directory %s holds its state under %s; kept", folder, names)
    layout = {"state.shards": shards, "state.shard_names": names}
    if stored != layout:
        tmp = (folder / LAYOUT_FILE).with_suffix(".tmp")
        tmp.write_text(json.dumps(layout, sort_keys=True))
        tmp.replace(folder / LAYOUT_FILE)


def _stored_layout(folder: Path) -> dict[str, Any]:
    """``folder``'s layout record ({} without one)."""
    path = folder / LAYOUT_FILE
    try:
        stored: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RecoveryMismatch(f"recovery.dir: cannot read {path} ({exc})") from exc
    return stored


def _stored_names(stored: dict[str, Any]) -> str:
    """The shards' names of a directory that has partitions: its record's, else the
    numbers (written before the names were recorded)."""
    return str(stored.get("state.shard_names", "numbers"))


def recorded_layout(settings: Settings) -> Settings:
    """``settings`` with the shards' names that its recovery directory's state was
    written under, as :func:`check_layout` decides them: the record's, the numbers
    for partitions without a record of names, the settings' for no partitions yet."""
    if settings.recovery.dir is None or not _has_partitions(folder := Path(settings.recovery.dir)):
        return settings
    try:
        names = _stored_names(_stored_layout(folder))
    except RecoveryMismatch:
        return settings  # check_layout stopped the start-up on it
    if names == settings.state.shard_names:
        return settings
    return settings.model_copy(update={"state": settings.state.model_copy(update={"shard_names": names})})


GC_THRESHOLDS = (50_000, 20, 20)
"""The cyclic garbage collector's thresholds in a job process (Python's default:
700, 10, 10). The job allocates tens of containers per event and keeps most of
them for less than a batch; at the defaults the collector ran every few events
and rescanned the growing state, and took a quarter of a job process's CPU
(``python -m bench job``: 128 -> 96 CPU µs per event; with the collector off,
94). Reference counting frees almost everything; cycles wait a little longer."""


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Freeze what start-up built (modules, models, the dataflow) out of the
    collector's scans, and collect less often (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def limit_cpu_threads(threads: int) -> None:
    """Every CPU thread pool this process loaded (PyTorch's, OpenMP's, BLAS's) to ``threads``.

    Each pool starts with one thread per core, in every job process: 8 processes
    on 16 cores ran 128 OpenMP threads that spun after each small batch. One per
    process is what a job that scales with processes wants (``bench job``: job
    CPU per event 135 -> 126 µs with two processes on two cores, 83 -> 78 with one)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def _recovery_config(settings: Settings) -> object | None:
    from bytewax.recovery import RecoveryConfig

    r = settings.recovery
    if r.dir is None:
        return None
    return RecoveryConfig(Path(r.dir), backup_interval=timedelta(seconds=r.backup_interval_s))


def run_process(
    process_id: int | None,
    addresses: list[str] | None,
    workers_per_process: int = 1,
    settings: Settings | None = None,
    port_offset: bool = True,
) -> None:
    """Run this process's share of the job (blocks until the flow stops).

    Metrics are served on ``METRICS_PORT + process_id`` when ``port_offset``
    (several processes on one host), else on ``METRICS_PORT`` (one per pod)."""
    from bytewax.errors import BytewaxRuntimeError
    from bytewax.run import cli_main

    from flows.fraud import kafka_flow
    from operators import metrics
    from operators.rules import RULES

    settings = recorded_layout(settings or load_settings())
    port = settings.metrics.port
    if port:
        metrics.prime(tuple(RULES))
        offset = (process_id or 0) if port_offset else 0
        serve_metrics(port + offset, settings.metrics.host)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        # Raising here would unwind through whatever Bytewax step runs now and
        # print a Rust panic: the first signal ends the sources instead (the
        # flow drains and returns), a second one stops at once.
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        log.info("%s: finishing the events in flight, then stopping", signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    workers = len(addresses or [""]) * workers_per_process
    _log_shard_spread(settings, workers)
    _log_kernels()
    flow = kafka_flow(settings, workers=workers, stopping=stopping.is_set)
    limit_cpu_threads(settings.models.cpu_threads)
    tune_gc()
    try:
        cli_main(
            flow,
            workers_per_process=workers_per_process,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.recovery.snapshot_interval_s),
            recovery_config=_recovery_config(settings),
        )
    except (KeyboardInterrupt, BytewaxRuntimeError):
        if not stopping.is_set():
            raise
        log.info("stopped by a second signal")
        return
    if stopping.is_set():
        log.info("stopped by signal")


def _log_kernels() -> None:
    """Say once whether the hot path runs its compiled kernels (``operators.kernels``)."""
    from operators import kernels

    k = kernels.describe()
    if not k["stale"] and not k["unavailable"]:
        log.info("hot path: compiled kernels %s", ", ".join(k["compiled"]))
        return
    why = []
    if k["unavailable"]:
        why.append(f"not built: {', '.join(k['unavailable'])} (no C compiler when it was installed)")
    if k["stale"]:
        why.append(f"built from an older source: {', '.join(k['stale'])} (run pip install -e . again)")
    log.warning(
        "hot path: running the pure-Python references of some kernels, several times slower; %s",
        "; ".join(why),
    )


def _log_shard_spread(settings: Settings, workers: int) -> None:
    from operators.shards import shards_per_worker

    if workers == 1:
        return
    st = settings.state
    spread = shards_per_worker(st.shards, workers, st.shard_names == "balanced")
    if spread is None:
        log.warning(
            "state: %d %s shards over %d workers spread as Bytewax's hash falls, some workers carrying "
            "more than others (balanced names, at most 256 shards and 1-16, 32, 48 or 64 workers "
            "spread them evenly)",
            st.shards,
            st.shard_names,
            workers,
        )
    elif spread[1] > spread[0] or workers > st.shards:
        log.info("state: %d shards over %d workers, %d to %d each", st.shards, workers, *spread)


def run_member(
    settings: Settings,
    process_id: int,
    addresses: list[str],
    workers_per_process: int = 1,
    recovery_wait_s: float = 300.0,
) -> int:
    """Run one process of a cluster whose processes are started separately
    (one per Kubernetes pod): every member bootstraps topics and tables (both
    idempotent); process 0 alone creates the recovery partitions on the shared
    recovery volume and the others wait for them."""
    if not 0 <= process_id < len(addresses):
        raise ValueError(f"process id {process_id} is not an index into {len(addresses)} addresses")
    bootstrap(settings, init_recovery=process_id == 0)
    if process_id != 0 and settings.recovery.dir is not None:
        folder = Path(settings.recovery.dir)
        deadline = time.monotonic() + recovery_wait_s
        while not any(folder.glob("part-*.sqlite3")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"process 0 did not create recovery partitions in {folder}")
            time.sleep(1.0)
    run_process(process_id, addresses, workers_per_process, settings, port_offset=False)
    return 0


def run_job(
    settings: Settings, processes: int = 1, workers_per_process: int = 1, config_path: str | None = None
) -> int:
    """Bootstrap, then run ``processes`` cluster processes until one exits.

    Raises :class:`PortInUse` before anything starts when a metrics port is taken."""
    m = settings.metrics
    for i in range(processes if m.port else 0):
        check_port(m.host, m.port + i, "metrics", JOB_PORT_HINT)
    bootstrap(settings)
    if processes == 1:
        run_process(None, None, workers_per_process, settings)
        return 0
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(processes)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(addresses))
    env = dict(os.environ)
    if config_path:
        env["FRAUDSTREAM_CONFIG"] = config_path
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.worker",
                "--process-id",
                str(i),
                "--addresses",
                f.name,
                "--workers",
                str(workers_per_process),
            ],
            env=env,
        )
        for i in range(processes)
    ]
    stop = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = 0
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        code = next(p.returncode for p in procs if p.returncode is not None)
        if code and not stop:
            log.error("a job process exited with code %s; stopping the others", code)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return code
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        Path(f.name).unlink(missing_ok=True)
