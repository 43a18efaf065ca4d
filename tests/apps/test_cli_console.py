"""`fraudstream console-user` and `fraudstream console` against the real embedded
Postgres: a token is printed once and only its hash kept; misuse is one line."""

from __future__ import annotations

import os

import psycopg
import pytest
from typer.testing import CliRunner

from apps.cli import app
from apps.console.store import CaseStore, token_sha256

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(make_settings, monkeypatch):
    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    url = make_settings().database_url
    env = {**os.environ, "DATABASE_URL": url, "FRAUDSTREAM_USER": "lead", "COLUMNS": "200"}
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), env=env)

    run.url = url  # type: ignore[attr-defined]
    return run


def test_add_prints_the_token_once_and_stores_only_its_hash(cli):
    added = cli("console-user", "add", "ana", "--role", "analyst")
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("fsc_") and len(token) > 40
    with psycopg.connect(cli.url) as conn:
        stored = conn.execute("SELECT token_sha256 FROM analysts WHERE name = 'ana'").fetchone()[0]
        audit = conn.execute("SELECT actor, action, subject FROM audit_log").fetchall()
    assert stored == token_sha256(token) and token not in stored
    assert audit == [("lead", "analyst.add", "analyst/ana")]
    assert CaseStore(cli.url).analyst_for(token) == {"name": "ana", "role": "analyst"}
    taken = cli("console-user", "add", "ana")
    assert taken.exit_code == 1 and "exists; revoke it first" in taken.output
    listed = cli("console-user", "list").stdout
    assert "ana" in listed and "analyst" in listed and token not in listed
    assert cli("console-user", "revoke", "ana").exit_code == 0
    assert CaseStore(cli.url).analyst_for(token) is None
    again = cli("console-user", "add", "ana", "--role", "admin")
    assert again.exit_code == 0 and CaseStore(cli.url).analyst_for(again.stdout.strip())["role"] == "admin"


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("console-user", "add", "x", "--role", "boss"), "--role: 'boss' is not analyst or admin", 2),
        (("console-user", "add", " "), "NAME must be 1-128 characters", 2),
        (("console-user", "revoke", "nobody"), "no active analyst 'nobody'", 1),
    ],
)
def test_misuse_is_one_line(cli, args, message, code):
    result = cli(*args)
    assert result.exit_code == code
    assert result.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert "Traceback" not in result.output


def test_console_on_a_taken_port_is_one_line(cli):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        result = cli("console", "--port", str(s.getsockname()[1]))
    assert result.exit_code == 1
    assert "console" in result.stderr.splitlines()[-1] and "console.port" in result.stderr
    assert "Traceback" not in result.output
