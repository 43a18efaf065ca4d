"""The ``fraudstream`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from apps.cli_console import console_command, console_user_app
from apps.cli_data import (
    ConfigOpt,
    config_or_exit,
    console,
    err_console,
    error_line,
    fail,
    service_errors,
    settings_or_exit,
)
from apps.cli_rules import backtest, rules_app

if TYPE_CHECKING:
    from apps.demo import Summary

app = typer.Typer(
    help="Real-time fraud detection on Kafka with Bytewax.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="The embedded stack: Kafka-protocol broker, PostgreSQL, Redis.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
models_app = typer.Typer(help="Model versions: list, activate, challenge, promote.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(rules_app, name="rules")
app.add_typer(console_user_app, name="console-user")
app.command("console")(console_command)
app.command()(backtest)
STACK_ROOT = Path(".fraudstream/stack")


@app.command()
def run(
    config: ConfigOpt = None,
    processes: Annotated[int, typer.Option("--processes", "-p", min=1)] = 1,
    workers: Annotated[int, typer.Option("--workers-per-process", "-w", min=1)] = 1,
    process_id: Annotated[
        int | None,
        typer.Option(
            "--process-id",
            "-i",
            min=0,
            envvar="FRAUDSTREAM_PROCESS_ID",
            help="run as this member of a cluster started elsewhere (e.g. a StatefulSet pod ordinal)",
        ),
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(
            "--addresses",
            "-a",
            envvar="FRAUDSTREAM_ADDRESSES",
            help="comma-separated host:port of every cluster member, in process-id order",
        ),
    ] = None,
) -> None:
    """Run the scoring job against the configured Kafka, Postgres and Redis.

    Either ``--processes N`` local processes, or one member of a cluster with
    ``--process-id`` and ``--addresses`` (Kubernetes: one per pod)."""
    from flows.runner import run_job, run_member

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, source = config_or_exit(config)
    if (process_id is None) != (addresses is None):
        console.print("[red]--process-id and --addresses go together[/red]")
        raise typer.Exit(2)
    try:
        with service_errors(settings):
            if process_id is not None and addresses is not None:
                members = [a.strip() for a in addresses.split(",") if a.strip()]
                if process_id >= len(members):
                    console.print(f"[red]--process-id {process_id} but only {len(members)} addresses[/red]")
                    raise typer.Exit(2)
                code = run_member(settings, process_id, members, workers)
            else:
                code = run_job(settings, processes, workers, str(source.path) if source.path else None)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="approximate valid events")] = 20_000,
    users: int = 2_000,
    processes: Annotated[int, typer.Option("--processes", "-p", min=1)] = 1,
    seed: int = 7,
    metrics_port: int = 9108,
    keep_running: Annotated[bool, typer.Option(help="keep job and stack up afterwards")] = False,
) -> None:
    """Start the embedded stack, run the job, stream a workload with injected fraud, summarise."""
    from apps.demo import run_demo
    from flows.launcher import JobExited
    from flows.runner import PortInUse, check_port

    try:
        check_port("127.0.0.1", metrics_port, "metrics", "--metrics-port to a free port")
    except PortInUse as exc:
        fail(str(exc))
    try:
        summary = run_demo(
            events,
            users,
            processes,
            seed,
            Path(".fraudstream/demo"),
            metrics_port,
            keep_running,
            console,
            lambda s: console.print(_demo_table(s)),
        )
    except JobExited as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        fail(f"{lines[0]}: {lines[-1]}" if len(lines) > 1 else str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the job and the stack are stopped", 130)
    ok = summary.rows + summary.dead_letters == summary.events
    if not ok:
        console.print("[red]not every event was accounted for[/]")
    if not keep_running:
        console.print(
            "The demo's job and stack are stopped. To look around (console, alerts, rules, "
            "label): fraudstream demo --keep-running, then each command with "
            "--config .fraudstream/demo/fraudstream.yaml; or fraudstream stack up for a stack "
            "of your own.",
            highlight=False,
        )
    raise typer.Exit(0 if ok else 1)


def _demo_table(s: Summary) -> Table:
    table = Table(title="fraudstream demo", show_header=False)
    table.add_row("events produced", f"{s.events:,}")
    table.add_row("scored (rows in Postgres)", f"{s.rows:,}")
    table.add_row("dead-lettered", f"{s.dead_letters:,}")
    table.add_row("alerts", f"MEDIUM {s.levels['MEDIUM']:,}  HIGH {s.levels['HIGH']:,}")
    table.add_row("model version", ", ".join(s.model_versions))
    table.add_row("top rules", ", ".join(f"{r} {n}" for r, n in s.top_rules) or "-")
    below = False
    for scenario, (hit, total) in s.caught.items():
        flagged = s.flagged.get(scenario, 0)
        more = f"; a rule fired on {flagged:,} (scored, not alerted: see below)" if flagged > hit else ""
        below = below or flagged > hit
        table.add_row(f"caught: {scenario}", f"{hit:,} of {total:,} injected alerted{more}")
    if below:
        table.add_row(
            "",
            "a rule alone can score under ensemble.medium_threshold: the row records it "
            "(triggered_rules), the alert needs more evidence",
        )
    if s.alert_precision is not None:
        table.add_row("alert precision", f"{s.alert_precision:.0%} of alerts are injected fraud")
    table.add_row("throughput", f"{s.throughput:,.0f} events/s (the whole burst, queueing included)")
    table.add_row(
        "latency in the burst",
        f"p50 {s.latency_p50_ms:.1f} ms  p99 {s.latency_p99_ms:.1f} ms "
        "(produce to row: mostly waiting behind the burst)",
    )
    if s.steady is not None:
        rate, p50, p99 = s.steady
        table.add_row(
            "end-to-end latency", f"p50 {p50:.1f} ms  p99 {p99:.1f} ms at a steady {rate:,.0f} events/s"
        )
    return table


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="model directory (versions + active)")],
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", "-s", help="events: .jsonl/.csv/.parquet (optionally .gz) or a postgresql:// URL"
        ),
    ] = None,
    supervised: Annotated[
        bool,
        typer.Option(
            help="train the supervised model on scored_events joined with labels (Postgres of the "
            "config) and make it the challenger"
        ),
    ] = False,
    config: ConfigOpt = None,
    validation_days: Annotated[float, typer.Option(help="--supervised: latest days held out")] = 7.0,
    activate: Annotated[bool, typer.Option(help="make the new version the active one")] = False,
    attribute_features: Annotated[
        str,
        typer.Option(
            help="comma-separated event attributes to use as features, e.g. "
            "trip_distance,duration_minutes,fare_per_mile,trip_speed_mph"
        ),
    ] = "",
    epochs: int = 40,
    seed: int = 0,
    device: str = "auto",
    calibration: Annotated[
        str,
        typer.Option(
            help="anomaly score scale: tail-rarity (20 points per factor of ten in rarity) or "
            "percentile (the reference's uniform 0-100)"
        ),
    ] = "tail-rarity",
    keep: Annotated[
        int, typer.Option(help="keep the N newest versions (plus the active one and the challenger)")
    ] = 10,
) -> None:
    """Train the autoencoder and Isolation Forest on events and write a versioned artifact;
    with --supervised, train the supervised model on labelled scored events as the challenger."""
    from rich.progress import BarColumn, Progress, TextColumn

    if keep < 1:
        raise typer.BadParameter("--keep must be at least 1")
    import models as models_package

    if out.resolve() == Path(models_package.__file__).resolve().parent:
        raise typer.BadParameter(
            f"{out} is fraudstream's own models package (source code); write the artifacts "
            "elsewhere, e.g. -o artifacts/models",
            param_hint="--out",
        )
    if supervised and activate:
        raise typer.BadParameter(
            "a supervised model starts as the challenger, scored in shadow; promote it by its "
            "measured AP with: fraudstream models promote DIR",
            param_hint="--activate",
        )
    from models.calibration import CALIBRATIONS

    if calibration not in CALIBRATIONS:
        raise typer.BadParameter(f"choose one of {', '.join(CALIBRATIONS)}", param_hint="--calibration")
    if supervised:
        _train_supervised(config, out, validation_days, seed)
        _prune(out, keep)
        return
    if not source:
        raise typer.BadParameter("give --source (events to learn normal traffic from) or --supervised")

    from models.training import TrainingConfig
    from models.training import train as run_training
    from operators.event_files import EventReadReport, read_events

    attrs = tuple(a.strip() for a in attribute_features.split(",") if a.strip())
    training_config = TrainingConfig(
        attribute_features=attrs, seed=seed, epochs=epochs, device=device, calibration=calibration
    )
    report = EventReadReport()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), console=console
    ) as progress:
        step = progress.add_task("reading events", total=None, info="")
        epoch = progress.add_task("autoencoder epochs", total=epochs, info="", visible=False)

        def on_epoch(n: int, loss: float) -> None:
            progress.update(epoch, completed=n, visible=True, info=f"val loss {loss:.4f}")

        try:
            result = run_training(
                read_events(source, report),
                out,
                training_config,
                activate,
                lambda msg: progress.update(step, description=msg),
                on_epoch,
            )
        except (ValueError, OSError) as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc
    console.print(
        f"read {report.read:,} records, {report.invalid:,} invalid {report.errors if report.errors else ''}"
    )
    console.print(
        f"trained version [bold]{result.version}[/] on {result.events:,} events, "
        f"{len(result.columns)} features -> {out / result.version}" + (" (active)" if activate else "")
    )
    _prune(out, keep)


def _prune(out: Path, keep: int) -> None:
    from models.artifacts import ModelStore

    removed = ModelStore(out).prune(keep)
    if removed:
        console.print(
            f"removed {len(removed)} old version(s), keeping the {keep} newest: {', '.join(removed)}"
        )


def _train_supervised(config: Path | None, out: Path, validation_days: float, seed: int) -> None:
    from models.champion import supervised_columns, train_supervised

    settings = settings_or_exit(config)
    risk = settings.entity_risk
    columns = supervised_columns(risk.entities if risk.enabled else (), risk.windows_days)
    try:
        result = train_supervised(
            settings.database_url, out, columns, settings.labels.maturity_days, validation_days, seed=seed
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    m = result.metrics
    console.print(
        f"trained challenger [bold]{result.version}[/] on {m['train_events']:,} events "
        f"({m['train_frauds']:,} frauds), labels as of {m['as_of']}"
    )
    console.print(
        f"held-out window from {m['validation_from']}: {m['validation_events']:,} events, "
        f"{m['validation_frauds']:,} frauds; average precision supervised "
        f"{_fmt(m['supervised_ap'])} vs champion {_fmt(m['champion_ap'])}"
    )
    console.print("it now scores in shadow; decide with: fraudstream models promote " + str(out))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@models_app.command("promote")
def models_promote(
    path: Annotated[Path, typer.Argument(help="model directory")],
    config: ConfigOpt = None,
    margin: Annotated[float, typer.Option(help="AP the challenger must gain over the champion")] = 0.02,
    window_days: Annotated[float, typer.Option(help="most recent labelled window compared")] = 7.0,
    min_frauds: Annotated[int, typer.Option(help="labelled frauds needed in the window")] = 10,
) -> None:
    """Promote the challenger if its shadow scores beat the active model's; the decision is logged."""
    from models.champion import promote

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_or_exit(config)
    try:
        d = promote(
            settings.database_url,
            path,
            settings.labels.maturity_days,
            margin,
            window_days,
            min_frauds,
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    verdict = "[green]promoted[/]" if d.promoted else "[yellow]not promoted[/]"
    console.print(
        f"{verdict} {d.challenger} (champion {d.champion}): {d.reason}; "
        f"{d.events:,} shadow-scored events, {d.frauds:,} labelled frauds"
    )
    raise typer.Exit(0 if d.promoted else 3)


@models_app.command("challenge")
def models_challenge(path: Annotated[Path, typer.Argument(help="model directory")], version: str) -> None:
    """Make VERSION the challenger: running jobs score it in shadow beside the active model."""
    from models.artifacts import ArtifactError, ModelStore

    try:
        ModelStore(path).activate(version, pointer="challenger")
    except ArtifactError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"challenger: {version}")


@models_app.command("list")
def models_list(path: Annotated[Path, typer.Argument(help="model directory")]) -> None:
    """List model versions; the active one is marked."""
    import json

    from models.artifacts import ModelStore

    if not path.is_dir():
        fail(f"{path}: no such folder", 2)
    store = ModelStore(path)
    active, challenger, versions = store.active(), store.challenger(), store.versions()
    if not versions:
        console.print(f"no model versions in {path} (fraudstream train ... -o {path})", highlight=False)
    for version in versions:
        meta = json.loads((path / version / "metadata.json").read_text())
        mark = "*" if version == active else "c" if version == challenger else " "
        console.print(
            f"{mark} {version}  {meta['created_at']}  {meta['training']['events']:,} events  "
            f"{len(meta['features'])} features"
        )


@models_app.command("activate")
def models_activate(path: Annotated[Path, typer.Argument(help="model directory")], version: str) -> None:
    """Make VERSION the active model; running jobs switch to it without a restart."""
    from models.artifacts import ArtifactError, ModelStore

    try:
        ModelStore(path).activate(version)
    except ArtifactError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"active model: {version}")


@stack_app.command("up")
def stack_up(kafka_port: int = 19092, postgres_port: int = 15432, redis_port: int = 16379) -> None:
    """Start the embedded services in the background (ports match the default config)."""
    from infra.stack import EmbeddedStack

    info = EmbeddedStack(
        STACK_ROOT, {"kafka": kafka_port, "postgres": postgres_port, "redis": redis_port}
    ).start()
    for name, value in info.env().items():
        console.print(f"export {name}={value}", highlight=False)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the embedded services (the broker is memory-only: its data goes)."""
    from infra.stack import EmbeddedStack

    EmbeddedStack(STACK_ROOT).stop()
    console.print("stack stopped")


@stack_app.command("status")
def stack_status() -> None:
    """Show whether each embedded service is running."""
    from infra.stack import EmbeddedStack

    info = EmbeddedStack(STACK_ROOT).info()
    if info is None:
        console.print("stack is not running")
        raise typer.Exit(1)
    alive = info.alive()
    for name, port in info.ports.items():
        console.print(f"{name:9} 127.0.0.1:{port:<6} {'up' if alive.get(name) else 'DOWN'}")
    raise typer.Exit(0 if all(alive.values()) else 1)


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate the configuration and print it."""
    import json

    from flows.config import redacted

    console.print_json(json.dumps(redacted(settings_or_exit(config))))


@app.command()
def gateway(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="default: gateway.host")] = None,
    port: Annotated[int | None, typer.Option(help="default: gateway.port")] = None,
) -> None:
    """HTTP gateway: ingestion and synchronous score calls into the stream (OpenAPI docs at /docs)."""
    from apps.gateway import run_gateway
    from apps.gateway.keys import KeysFileError
    from flows.config import ConfigError
    from flows.runner import check_port

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_or_exit(config)
    g = settings.gateway
    try:
        with service_errors(settings):
            check_port(
                host or g.host,
                port or g.port,
                "gateway",
                "gateway.port (FRAUDSTREAM__GATEWAY__PORT) or --port to a free port",
            )
            run_gateway(settings, host, port)
    except (ConfigError, KeysFileError) as exc:
        fail(str(exc), 2)


@app.command("gateway-key")
def gateway_key(
    name: Annotated[str, typer.Argument(help="who the key is for, e.g. pos-terminals")],
    append: Annotated[
        Path | None,
        typer.Option(
            "--append",
            metavar="FILE",
            help="add the key to this keys file (created if missing; rewritten without its comments)",
        ),
    ] = None,
) -> None:
    """Make a new API key: the key goes to stderr, once (it is not stored); stdout is a
    complete keys file for gateway.keys_file, or with --append the key joins FILE."""
    from apps.gateway.keys import KeysFileError, append_key, hash_key, keys_file_text, new_key

    if not name.strip():
        fail("NAME must not be empty", 2)
    key = new_key()
    if append is not None:
        try:
            count = append_key(append, name, key)
        except KeysFileError as exc:
            fail(str(exc), 2)
        except OSError as exc:
            fail(f"gateway.keys_file: cannot write {append}: {exc.strerror}", 2)
        err_console.print(
            escape(f"added {name!r} to {append} ({count} keys)"), highlight=False, soft_wrap=True
        )
    else:
        sys.stdout.write(keys_file_text([{"name": name, "sha256": hash_key(key)}]))
        err_console.print(
            "keys file on stdout (save it, e.g. `> gateway-keys.yaml`, and set gateway.keys_file); "
            "to add to an existing file use --append FILE",
            style="dim",
            highlight=False,
            soft_wrap=True,
        )
    err_console.print(
        escape(f"key for {name} (give it to the client; it is not stored): {key}"),
        highlight=False,
        soft_wrap=True,
    )


def _register_data_commands() -> None:
    from apps import cli_data, cli_dlq
    from apps.cli_retention import retention

    for fn in (
        retention,
        cli_data.replay,
        cli_data.produce,
        cli_data.label,
        cli_data.alerts,
        cli_data.evaluate,
        cli_data.explain,
        cli_dlq.dlq,
    ):
        app.command()(fn)


_register_data_commands()


def main() -> None:
    """The ``fraudstream`` command: :data:`app`, with a file a user named that cannot be
    read or written (missing, a folder, no permission) as one line and exit status 2
    wherever a command opens it, instead of a traceback."""
    try:
        app()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if exc.filename is None:
            raise
        error_line(f"{exc.filename}: {exc.strerror or type(exc).__name__}")
        sys.exit(2)


if __name__ == "__main__":
    main()
