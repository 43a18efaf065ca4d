import os
import subprocess
import sys

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient

from infra.stack import EmbeddedStack, free_port

pytestmark = pytest.mark.integration


def test_stack_starts_every_service_and_stops_them(tmp_path):
    stack = EmbeddedStack(tmp_path / "s", {"kafka": 0, "postgres": 0, "redis": 0})
    info = stack.start()
    try:
        env = info.env()
        assert stack.start() == info  # already running: reused
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("fraudstream",)
        assert redis.Redis.from_url(env["REDIS_URL"]).ping()
        assert (
            AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]}).list_topics(timeout=5)
            is not None
        )
        assert all(info.alive().values())
    finally:
        stack.stop()
    assert not any(info.alive().values())
    assert stack.info() is None
    assert not stack._procs  # every child waited for: none left to warn "still running" when collected


def test_stack_refuses_ports_in_use(tmp_path, stack):
    busy = EmbeddedStack(tmp_path / "b", {"kafka": stack.ports["kafka"], "postgres": 0, "redis": 0})
    with pytest.raises(RuntimeError, match="ports already in use: kafka"):
        busy.start()


def test_cli_stack_up_status_down(tmp_path):
    ports = [str(free_port()) for _ in range(3)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "apps.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    up = cli("stack", "up", "--kafka-port", ports[0], "--postgres-port", ports[1], "--redis-port", ports[2])
    try:
        assert up.returncode == 0, up.stderr
        assert f"export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{ports[0]}" in up.stdout
        status = cli("stack", "status")
        assert status.returncode == 0 and status.stdout.count(" up") == 3
    finally:
        down = cli("stack", "down")
    assert down.returncode == 0
    assert cli("stack", "status").returncode == 1


def test_a_random_port_taken_before_the_service_binds_it_is_replaced(tmp_path, monkeypatch):
    """free_port() finds a port free, then another process binds it before the broker
    does: the stack picks another port instead of failing (this once failed a whole
    test session). The squatter hides from the stack's own busy check, as a racing
    process would."""
    import socket

    import infra.stack

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_free_port, real_port_open, handed = infra.stack.free_port, infra.stack._port_open, []

    def racing_free_port() -> int:
        handed.append(taken if not handed else real_free_port())
        return handed[-1]

    monkeypatch.setattr(infra.stack, "free_port", racing_free_port)
    monkeypatch.setattr(infra.stack, "_port_open", lambda port: port != taken and real_port_open(port))
    stack = EmbeddedStack(tmp_path / "s", {"kafka": 0, "postgres": 0, "redis": 0})
    try:
        info = stack.start()
        assert handed[0] == taken and info.ports["kafka"] not in (taken, 0)
        assert "exited" not in str(info.alive()) and all(info.alive().values())
        assert AdminClient({"bootstrap.servers": f"127.0.0.1:{info.ports['kafka']}"}).list_topics(timeout=10)
    finally:
        stack.stop()
        squatter.close()
