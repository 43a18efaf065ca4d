"""``fraudstream dlq``: inspect the dead-letter topic, and re-submit dead letters (registered in apps.cli)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from apps.cli_data import ConfigOpt, console, err_console, fail, reach_kafka_or_exit, settings_or_exit

if TYPE_CHECKING:
    from apps.dead_letters import DeadLetterEntry, Selection
    from flows.config import Settings

__all__ = ["dlq"]


def dlq(
    config: ConfigOpt = None,
    limit: Annotated[
        int, typer.Option(min=0, help="show the last N dead letters (0: only the counts by field)")
    ] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="then print new ones as they come")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="with --follow: stop after N seconds without a new one")
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(help="only dead letters whose error names this field, e.g. amount (repeatable)"),
    ] = None,
    offset: Annotated[
        list[str] | None,
        typer.Option(
            help="only the dead letter of this rejected message: [PARTITION:]OFFSET in its source topic "
            "(repeatable)"
        ),
    ] = None,
    resubmit: Annotated[
        bool,
        typer.Option(
            help="produce the selected dead letters' payloads, with their keys, back to the topic they "
            "came from (needs --field or --offset)"
        ),
    ] = False,
) -> None:
    """Dead letters: the last ones with reason, source and payload, counts by error field;
    --resubmit sends selected ones back once what rejected them is fixed."""
    from apps.dead_letters import Selection

    settings = settings_or_exit(config)
    try:
        selection = Selection.parse(offset or [], field or [])
    except ValueError as exc:
        fail(str(exc), 2)
    if resubmit and selection.empty:
        fail("--resubmit needs --field or --offset (which dead letters to send back)", 2)
    if resubmit and follow:
        fail("--resubmit and --follow do not go together", 2)
    reach_kafka_or_exit(settings)
    if resubmit:
        _resubmit(settings, selection)
    else:
        _show(settings, selection, limit, follow, timeout)


def _read(settings: Settings, follow: bool, timeout: float | None) -> Iterator[DeadLetterEntry | None]:
    from apps.dead_letters import read_dead_letters

    k = settings.kafka
    try:
        yield from read_dead_letters(k.bootstrap_servers, k.dlq_topic, k.client_config, follow, timeout)
    except LookupError as exc:  # no such topic yet
        err_console.print(escape(str(exc)), highlight=False, soft_wrap=True)
    except RuntimeError as exc:
        fail(str(exc))


def _line(entry: DeadLetterEntry) -> str:
    from apps.dead_letters import preview

    d = entry.letter
    when = d.failed_at[:19].replace("T", " ") if d else "?"
    mark = " [truncated]" if d and d.truncated else ""
    reason = d.error if d else "not a dead letter (not JSON of the contract's shape)"
    return (
        f"{entry.partition}@{entry.offset:<6} {when:19}  {entry.source:28} {entry.field:12} "
        f"{reason}  |  {preview(entry)}{mark}"
    )


def _print(entry: DeadLetterEntry) -> None:
    console.print(escape(_line(entry)), highlight=False, soft_wrap=True)


def _show(settings: Settings, selection: Selection, limit: int, follow: bool, timeout: float | None) -> None:
    topic = settings.kafka.dlq_topic
    counts: collections.Counter[str] = collections.Counter()
    last: collections.deque[DeadLetterEntry] = collections.deque(maxlen=limit or None)
    live = False
    header = (
        f"{'dlq p@offset':13} {'failed at':19}  {'source topic/partition@offset':28} {'field':12} "
        "reason  |  payload"
    )
    try:
        for entry in _read(settings, follow, timeout):
            if entry is None:  # caught up: what was there, then new ones live
                _summary(topic, last, counts, limit, header)
                live = True
                err_console.print(f"following {topic} (Ctrl-C to stop)...", style="dim", highlight=False)
                continue
            if not selection.matches(entry):
                continue
            counts[entry.field] += 1
            if live:
                _print(entry)
            elif limit:
                last.append(entry)
    except KeyboardInterrupt:
        pass
    if not live:
        _summary(topic, last, counts, limit, header)
    else:
        _counts(counts)


def _summary(
    topic: str,
    last: collections.deque[DeadLetterEntry],
    counts: collections.Counter[str],
    limit: int,
    header: str,
) -> None:
    total = sum(counts.values())
    if last:
        console.print(header, style="bold", highlight=False, soft_wrap=True)
        for entry in sorted(
            last, key=lambda e: (e.letter.failed_at if e.letter else "", e.partition, e.offset)
        ):
            _print(entry)
    shown = f" (the last {len(last)} shown)" if 0 < len(last) < total else ""
    console.print(f"{total:,} dead letters in {escape(topic)}{shown}", highlight=False)
    _counts(counts)


def _counts(counts: collections.Counter[str]) -> None:
    if counts:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties by name: the same every run
        by_field = ", ".join(f"{name} {n:,}" for name, n in ranked)
        console.print(escape(f"by field: {by_field}"), highlight=False, soft_wrap=True)


def _resubmit(settings: Settings, selection: Selection) -> None:
    from apps.dead_letters import NotResubmittable, original_payload
    from apps.produce import produce_all

    k = settings.kafka
    batches: dict[str, list[tuple[bytes | None, bytes]]] = {}
    chosen: list[str] = []
    refused = 0
    for entry in _read(settings, False, None):
        if entry is None or not selection.matches(entry):
            continue
        d = entry.letter
        if d is None:
            refused += 1
            err_console.print(
                f"cannot re-submit dlq {entry.partition}@{entry.offset}: not a readable dead letter",
                highlight=False,
            )
            continue
        try:
            payload = original_payload(d)
        except NotResubmittable as exc:
            refused += 1
            err_console.print(
                escape(f"cannot re-submit {entry.source} (dlq {entry.partition}@{entry.offset}): {exc}"),
                highlight=False,
                soft_wrap=True,
            )
            continue
        target = d.topic or k.transactions_topic
        batches.setdefault(target, []).append((None if d.key is None else d.key.encode("utf-8"), payload))
        chosen.append(
            f"{entry.source} (dlq {entry.partition}@{entry.offset}, key {d.key!r}, {len(payload)} bytes)"
        )
    sent = 0
    for target, messages in batches.items():
        try:
            sent += produce_all(k.bootstrap_servers, target, messages, k.client_config)
        except RuntimeError as exc:
            fail(str(exc))
    for line in chosen:
        console.print(escape(f"re-submitted {line}"), highlight=False, soft_wrap=True)
    if not sent and not refused:
        fail(f"no dead letter in {k.dlq_topic} matches the selection", 1)
    to = ", ".join(batches) or "-"
    console.print(
        escape(
            f"re-submitted {sent:,} dead letters to {to}" + (f"; {refused:,} could not be" if refused else "")
        ),
        highlight=False,
    )
    raise typer.Exit(1 if refused else 0)
