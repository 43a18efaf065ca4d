"""``fraudstream console`` and ``fraudstream console-user`` (registered in apps.cli).

fraudstream console [--host H] [--port P]         # the review queue, default http://127.0.0.1:8090
fraudstream console-user add NAME --role analyst  # prints the token once; stores its SHA-256
fraudstream console-user list
fraudstream console-user revoke NAME
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from apps.cli_data import ConfigOpt, console, err_console, fail, service_errors, settings_or_exit
from apps.cli_rules import AuthorOpt, author_of

if TYPE_CHECKING:
    from apps.console.store import CaseStore
    from flows.config import Settings

__all__ = ["console_command", "console_user_app"]

console_user_app = typer.Typer(
    help="Console analysts: add (prints a token once), list, revoke.", no_args_is_help=True
)


def _store(settings: Settings) -> CaseStore:
    from apps.console.store import CaseStore
    from infra.migrations import apply_migrations

    apply_migrations(settings.database_url)
    return CaseStore(settings.database_url)


def console_command(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="default: console.host")] = None,
    port: Annotated[int | None, typer.Option(help="default: console.port")] = None,
) -> None:
    """The fraud operations console: review queue, lists, search, audit (docs/console.md)."""
    from apps.console.serve import first_admin, run_console
    from flows.runner import check_port

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_or_exit(config)
    cfg = settings.console
    host, port = host or cfg.host, port or cfg.port
    with service_errors(settings):
        check_port(
            host, port, "console", "console.port (FRAUDSTREAM__CONSOLE__PORT) or --port to a free port"
        )
        token = first_admin(_store(settings))
        if token is not None:
            err_console.print(
                escape(
                    f"first start: created analyst 'admin' (role admin); its token, shown once: {token}\n"
                    "add analysts with `fraudstream console-user add NAME --role analyst`"
                ),
                highlight=False,
                soft_wrap=True,
            )
        err_console.print(f"console: http://{host}:{port}/login", highlight=False, soft_wrap=True)
        run_console(settings, host, port)


@console_user_app.command("add")
def user_add(
    name: Annotated[
        str, typer.Argument(help="the analyst's name, as shown in assignments and the audit trail")
    ],
    role: Annotated[str, typer.Option(help="analyst or admin")] = "analyst",
    config: ConfigOpt = None,
    author: AuthorOpt = None,
) -> None:
    """Add an analyst: the token goes to stdout once (only its SHA-256 is stored)."""
    from apps.console.serve import new_token

    if role not in ("analyst", "admin"):
        fail(f"--role: {role!r} is not analyst or admin", 2)
    if not name.strip() or len(name) > 128:
        fail("NAME must be 1-128 characters", 2)
    settings = settings_or_exit(config)
    token = new_token()
    with service_errors(settings):
        added = _store(settings).add_analyst(name.strip(), role, token, author_of(author))
    if not added:
        fail(f"analyst {name!r} exists; revoke it first to issue a new token", 1)
    err_console.print(escape(f"added {name!r} ({role}); the token, shown once:"), highlight=False)
    typer.echo(token)


@console_user_app.command("list")
def user_list(config: ConfigOpt = None) -> None:
    """Analysts, their roles and who added them (never the tokens)."""
    settings = settings_or_exit(config)
    with service_errors(settings):
        rows = _store(settings).analysts()
    table = Table("name", "role", "added", "by", "revoked")
    for r in rows:
        table.add_row(
            escape(r["name"]), r["role"], r["created_at"], escape(r["created_by"]), r["revoked_at"] or ""
        )
    console.print(table)


@console_user_app.command("revoke")
def user_revoke(name: str, config: ConfigOpt = None, author: AuthorOpt = None) -> None:
    """Revoke an analyst's token at once."""
    settings = settings_or_exit(config)
    with service_errors(settings):
        revoked = _store(settings).revoke_analyst(name, author_of(author))
    if not revoked:
        fail(f"no active analyst {name!r}", 1)
    err_console.print(escape(f"revoked {name!r}"), highlight=False)
