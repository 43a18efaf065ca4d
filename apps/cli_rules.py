"""``fraudstream rules``: rule sets as versioned data (registered in apps.cli).

    fraudstream rules list
    fraudstream rules show [V]             # the active set (or the config file's) as YAML
    fraudstream rules apply FILE --comment "..." [--shadow] [--activate]
    fraudstream rules activate V
    fraudstream rules shadow V | --clear
    fraudstream rules diff V1 V2
    fraudstream rules compare [--days 7]   # shadow vs active: alerts, precision/recall, rule hits

Versions are immutable and stored in Postgres with author, time and comment;
the running job switches to a newly activated version between batches
(docs/rules.md). Every apply, activate and shadow change is an audit row.
"""

from __future__ import annotations

import difflib
import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from apps.cli_data import ConfigOpt, console, fail, plural, service_errors, settings_or_exit

if TYPE_CHECKING:
    from flows.config import Settings
    from flows.rulesets import RuleStore
    from models.base import ModelSet
    from operators.rulesets import RuleSetDocument

__all__ = ["rules_app"]

rules_app = typer.Typer(
    help="Rule sets as versioned data: list, show, apply, activate, shadow, diff, compare.",
    no_args_is_help=True,
)

AuthorOpt = Annotated[
    str | None, typer.Option(help="who makes the change (default: $FRAUDSTREAM_USER, else the login name)")
]


def author_of(author: str | None) -> str:
    if author:
        return author
    return os.environ.get("FRAUDSTREAM_USER") or getpass.getuser()


def _store(settings: Settings) -> RuleStore:
    from flows.rulesets import RuleStore
    from infra.migrations import apply_migrations

    apply_migrations(settings.database_url)
    return RuleStore(settings.database_url)


def _yaml(document: RuleSetDocument) -> str:
    return yaml.safe_dump(document.canonical(), sort_keys=False, allow_unicode=True)


def _document(settings: Settings, store: RuleStore, version: int | None) -> tuple[str, RuleSetDocument]:
    from operators.rulesets import RuleSetDocument

    if version is None:
        active = store.pointers().get("active")
        if active is None:
            return "the config file's rules (no version is active)", RuleSetDocument(rules=settings.rules)
        version = active
    try:
        return f"version {version}", store.get(version).document
    except LookupError as exc:
        fail(str(exc), 2)


@rules_app.command("list")
def rules_list(config: ConfigOpt = None) -> None:
    """Every version, newest last, with the active and shadow ones marked."""
    settings = settings_or_exit(config)
    with service_errors(settings):
        store = _store(settings)
        versions, pointers = store.versions(), store.pointers()
    if not versions:
        console.print("no rule set versions yet: the job uses the config file's rules")
        return
    marks = {v: name for name, v in pointers.items()}
    table = Table("version", "", "created", "author", "custom rules", "comment")
    for v in versions:
        table.add_row(
            str(v.version),
            marks.get(v.version, ""),
            v.created_at.isoformat(timespec="seconds"),
            escape(v.author),
            str(len(v.document.custom)),
            escape(v.comment),
        )
    console.print(table)


@rules_app.command("show")
def rules_show(
    version: Annotated[int | None, typer.Argument(help="a version (default: the active one)")] = None,
    config: ConfigOpt = None,
) -> None:
    """A version as YAML that `rules apply` accepts unchanged."""
    settings = settings_or_exit(config)
    with service_errors(settings):
        what, document = _document(settings, _store(settings), version)
    typer.echo(f"# {what}")
    typer.echo(_yaml(document), nl=False)


@rules_app.command("apply")
def rules_apply(
    file: Annotated[Path, typer.Argument(help="YAML (or JSON) rule set: `rules` and `custom`")],
    comment: Annotated[str, typer.Option(help="why this change (stored with the version)")],
    shadow: Annotated[bool, typer.Option(help="evaluate it beside the active set, deciding nothing")] = False,
    activate: Annotated[bool, typer.Option(help="make it the active set at once")] = False,
    author: AuthorOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Store a rule set as a new version (refused with the field and reason if invalid)."""
    from pydantic import ValidationError

    from operators.rulesets import RuleSetDocument

    if shadow and activate:
        fail("--shadow and --activate exclude each other", 2)
    settings = settings_or_exit(config)
    try:
        data: Any = yaml.safe_load(file.read_text())
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}", 2)
    except yaml.YAMLError as exc:
        fail(f"{file}: not YAML: {str(exc).splitlines()[0]}", 2)
    try:
        document = RuleSetDocument.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "".join(f"{p}: " for p in [".".join(str(part) for part in err["loc"])] if p)
        fail(f"{file}: {where}{err['msg'].removeprefix('Value error, ')}", 2)
    who = author_of(author)
    with service_errors(settings):
        store = _store(settings)
        version, created = store.apply(document, who, comment)
        if shadow:
            store.point("shadow", version, who)
        if activate:
            store.point("active", version, who)
    state = "stored as" if created else "identical to existing"
    extra = " (shadow)" if shadow else " (active)" if activate else ""
    console.print(f"{state} version [bold]{version}[/]{extra}")


@rules_app.command("activate")
def rules_activate(
    version: Annotated[int, typer.Argument(help="the version to decide with")],
    author: AuthorOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a version the active one; running jobs switch to it within seconds."""
    settings = settings_or_exit(config)
    with service_errors(settings):
        try:
            before = _store(settings).point("active", version, author_of(author))
        except LookupError as exc:
            fail(str(exc), 2)
    was = before if before is not None else "the config file"
    console.print(f"active rule set: version {version} (was {was})")


@rules_app.command("shadow")
def rules_shadow(
    version: Annotated[int | None, typer.Argument(help="the version to run in shadow")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="stop the shadow evaluation")] = False,
    author: AuthorOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Evaluate a version beside the active one on every batch, deciding nothing."""
    if (version is None) == (not clear):
        fail("give a version, or --clear", 2)
    settings = settings_or_exit(config)
    with service_errors(settings):
        try:
            _store(settings).point("shadow", None if clear else version, author_of(author))
        except LookupError as exc:
            fail(str(exc), 2)
    console.print("no shadow rule set" if clear else f"shadow rule set: version {version}")


@rules_app.command("diff")
def rules_diff(
    old: Annotated[int, typer.Argument(help="a version")],
    new: Annotated[int, typer.Argument(help="another version")],
    config: ConfigOpt = None,
) -> None:
    """What changed between two versions (unified diff of their YAML)."""
    settings = settings_or_exit(config)
    with service_errors(settings):
        store = _store(settings)
        docs = {}
        for v in (old, new):
            try:
                docs[v] = _yaml(store.get(v).document).splitlines(keepends=True)
            except LookupError as exc:
                fail(str(exc), 2)
    diff = "".join(difflib.unified_diff(docs[old], docs[new], f"version {old}", f"version {new}"))
    typer.echo(diff if diff else f"versions {old} and {new} are identical", nl=not diff)


@rules_app.command("compare")
def rules_compare(
    days: Annotated[
        float, typer.Option(min=0.001, help="the window: events scored in the last N days")
    ] = 7.0,
    json_out: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Shadow vs active over the events scored with a shadow set: alerts, blocks,
    precision/recall against known labels, per-rule hits, changed decisions."""
    import json
    from datetime import UTC, datetime, timedelta

    from apps.rule_compare import compare, fetch_compare_rows

    settings = settings_or_exit(config)
    until = datetime.now(UTC)
    with service_errors(settings):
        _store(settings)
        rows = fetch_compare_rows(settings.database_url, until - timedelta(days=days), until)
    e = settings.ensemble
    report = compare(rows, e.medium_threshold, e.high_threshold)
    if json_out:
        typer.echo(json.dumps(report, indent=1))
        return
    if not rows:
        console.print(f"no events scored with a shadow rule set in the last {days:g} days")
        return
    console.print(
        f"{report['events']:,} events with a shadow score in the last {days:g} days "
        f"({report['labelled_frauds']:,} labelled frauds); versions (active, shadow): "
        + ", ".join(f"({a if a is not None else 'config'}, {s})" for a, s in report["versions"])
    )
    table = Table("", "alerts", "blocks", "precision", "recall")
    for side in ("active", "shadow"):
        m = report[side]
        table.add_row(side, f"{m['alerts']:,}", f"{m['blocks']:,}", _pct(m["precision"]), _pct(m["recall"]))
    console.print(table)
    console.print(f"decisions that would change: {report['changed_decisions']:,}")
    hits = Table("rule", "active hits", "shadow hits")
    names = sorted(set(report["rule_hits"]["active"]) | set(report["rule_hits"]["shadow"]))
    for name in names:
        hits.add_row(
            name,
            str(report["rule_hits"]["active"].get(name, 0)),
            str(report["rule_hits"]["shadow"].get(name, 0)),
        )
    console.print(hits)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _backtest_models(models: Path | None, settings: Settings) -> ModelSet:
    """The active version of ``--models`` (which must hold one: a typo must not quietly
    re-score with rules alone), else of ``models.path``, else rules only."""
    from models.artifacts import ActiveModels
    from models.base import RULES_ONLY

    if models is not None and not models.is_dir():
        fail(f"--models: {models}: no such folder", 2)
    model_dir = models or (Path(settings.models.path) if settings.models.path else None)
    model_set = ActiveModels(model_dir, settings.models.device)() if model_dir else RULES_ONLY
    if models is not None and model_set is RULES_ONLY:
        fail(f"--models: {models} has no active model version (see fraudstream models list {models})", 2)
    return model_set


def backtest(
    out: Annotated[Path, typer.Option("--out", "-o", help="report folder (report.md, report.json)")],
    rules: Annotated[
        int | None, typer.Option(help="rule-set version (default: the active one, else the config file's)")
    ] = None,
    models: Annotated[
        Path | None, typer.Option(help="model directory; its active version scores (default: models.path)")
    ] = None,
    events: Annotated[
        list[Path] | None,
        typer.Option(help="events to re-score (.jsonl/.csv/.parquet); default: scored_events"),
    ] = None,
    labels: Annotated[
        list[Path] | None, typer.Option("--labels", "-l", help="labels file(s); default: the labels table")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="first event time (ISO 8601), inclusive")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="last event time (ISO 8601), exclusive")] = None,
    config: ConfigOpt = None,
) -> None:
    """Re-score events through the job's own flow in process with a rule-set version and
    model set, and report it beside what was served (docs/rules.md)."""
    from datetime import UTC, datetime

    import numpy as np

    from apps.backtest import backtest_report, fetch_served, rescore, write_backtest
    from apps.evaluate import db_labels, load_labels
    from operators.event_files import read_events
    from operators.rulesets import RuleSet

    def when(text: str | None, name: str) -> datetime | None:
        if text is None:
            return None
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            fail(f"{name}: not an ISO 8601 time: {text!r}", 2)
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    lo, hi = when(since, "--from"), when(until, "--to")
    settings = settings_or_exit(config)
    model_set = _backtest_models(models, settings)
    with service_errors(settings):
        store = _store(settings) if rules is not None or not events else None
        if rules is None and store is not None:
            rules = store.pointers().get("active")
        try:
            document = store.get(rules).document if (store and rules is not None) else None
        except LookupError as exc:
            fail(str(exc), 2)
        ruleset = RuleSet.build(document, rules) if document else RuleSet.from_config(settings.rules)
        try:
            sources = [str(p) for p in events] if events else [settings.database_url]
            picked = [
                ev
                for ev in read_events(sources)
                if (lo is None or ev.timestamp >= lo) and (hi is None or ev.timestamp < hi)
            ]
            label_map = load_labels(labels) if labels else db_labels(settings.database_url)
        except (OSError, ValueError) as exc:
            fail(str(exc), 2)
        if not picked:
            fail("no events to re-score in that window", 2)
        with console.status(f"re-scoring {len(picked):,} events through the flow..."):
            scored = rescore(picked, settings, ruleset, lambda: model_set)
        served = fetch_served(settings.database_url, [s.event.event_id for s in scored]) if not events else {}
    report = backtest_report(
        scored, served, {k: v[0] for k, v in label_map.items()}, ruleset.version, model_set.version
    )
    labelled = {k: v[0] for k, v in label_map.items()}
    y = np.array([1 if labelled.get(s.event.event_id) else 0 for s in scored])
    curves = {"backtest": (y, np.array([s.verdict.fraud_score for s in scored]))}
    if served and len(served) == len(scored):
        curves["served"] = (y, np.array([served[s.event.event_id].fraud_score for s in scored]))
    for path in write_backtest(report, out, curves):
        console.print(f"wrote {path}")
    b = report["backtest"]
    console.print(
        f"{plural(report['events'], 'event')}: {plural(b['alerts'], 'alert')}, {plural(b['blocks'], 'block')}"
        + (f"; {report['changed_decisions']:,} decisions differ from what was served" if served else "")
    )
