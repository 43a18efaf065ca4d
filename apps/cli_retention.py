"""``fraudstream retention``: drop the days of ``scored_events`` older than
``retention.keep_days`` (registered in apps.cli; docs/operations.md, "Retention")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from apps.cli_data import ConfigOpt, console, err_console, fail, service_errors, settings_or_exit

__all__ = ["retention"]


def retention(
    config: ConfigOpt = None,
    keep_days: Annotated[
        int | None, typer.Option(min=1, help="days of events to keep (default: retention.keep_days)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="say what would be dropped, drop nothing")] = False,
) -> None:
    """Drop whole days of scored_events older than the retention; labelled events are kept
    (in scored_events_labelled) for training and evaluation."""
    from infra.migrations import apply_migrations
    from infra.retention import drop_expired

    settings = settings_or_exit(config)
    days = keep_days or settings.retention.keep_days
    if days is None:
        fail("retention.keep_days is not set (keep everything); set it or pass --keep-days N", 2)
    with service_errors(settings):
        apply_migrations(settings.database_url)
        dropped = drop_expired(settings.database_url, days, datetime.now(UTC).date(), dry_run)
    if not dropped:
        err_console.print(f"nothing older than {days} days", highlight=False)
        return
    table = Table("day partition", "rows", "labelled rows kept", title="would drop" if dry_run else "dropped")
    for d in dropped:
        table.add_row(escape(d.partition), f"{d.rows:,}", f"{d.kept_labelled:,}")
    console.print(table)
