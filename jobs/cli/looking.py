"""``recycler status`` and ``recycler number``: looking at the result."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from jobs.cli.app import App, configure, emit_json, pass_app
from jobs.errors import ExitCode
from jobs.inspection import NumberView, StatusView, number_view, status_view


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status_command(app: App, as_json: bool) -> None:
    """Last runs, the outbox by state, the base by phase.

    Exits 0 when healthy, 1 when the last run failed or no run succeeded recently.
    """
    configure(app)
    view = status_view(app.database(), app.settings, app.clock, app.settings.rules)
    if as_json:
        emit_json(view.to_json())
    else:
        _print_status(app, view)
    raise SystemExit(ExitCode.DONE if view.healthy else ExitCode.FAILURE)


def _print_status(app: App, view: StatusView) -> None:
    runs = Table(title="Last runs", title_justify="left")
    for heading in ("run", "date", "outcome", "queued", "recycled", "deferred", "guards"):
        runs.add_column(heading)
    for run in view.runs:
        queued = sum((run["warnings_queued"] or {}).values())
        outcome = run["outcome"] + (" (dry run)" if run["dry_run"] else "")
        runs.add_row(
            str(run["id"]),
            run["as_of"],
            outcome,
            str(queued),
            str(run["recycled"] or 0),
            str(run["deferred"] or 0),
            ", ".join(run["guards"] or []),
        )
    app.console.print(runs)
    outbox = Table(title="Outbox", title_justify="left", show_header=False)
    for state, value in view.outbox.items():
        if state == "oldest_pending_minutes":
            shown = "-" if value is None else f"{value:g} min"
            outbox.add_row("oldest pending", shown)
        elif state == "night":
            outbox.add_row("final states, warnings of", str(value or "-"))
        else:
            outbox.add_row(state.replace("_", " "), str(value))
    app.console.print(outbox)
    if view.deliveries:
        deliveries = Table(
            title=f"Deliveries (receipts awaited {app.settings.receipt_wait_hours:g} h)",
            title_justify="left",
        )
        for heading in (
            "night",
            "stage",
            "accepted",
            "delivered",
            "undelivered",
            "no receipt",
            "awaiting",
            "failed",
            "delivered %",
        ):
            deliveries.add_column(heading, justify="left" if heading == "night" else "right")
        for row in view.deliveries:
            share = row.delivered_share
            deliveries.add_row(
                row.night.isoformat(),
                str(row.stage),
                str(row.accepted),
                str(row.delivered),
                str(row.undelivered),
                str(row.no_receipt),
                str(row.awaiting_receipt),
                str(row.failed),
                "-" if share is None else f"{share * 100:.1f}",
            )
        app.console.print(deliveries)
    base = Table(
        title=f"Numbers on {view.today.isoformat()}", title_justify="left", show_header=False
    )
    for state, count in view.numbers_by_state.items():
        base.add_row(state.replace("_", " "), str(count))
    app.console.print(base)
    if view.healthy:
        app.console.print("healthy")
    for problem in view.problems:
        click.echo(f"unhealthy: {problem}", err=True)


@click.command("number")
@click.argument("msisdn")
@click.option("--json", "as_json", is_flag=True, help="Print the number's view as JSON.")
@pass_app
def number_command(app: App, msisdn: str, as_json: bool) -> None:
    """One number's state, owner, validity, warnings, pool entry and history."""
    configure(app)
    view = number_view(app.database(), app.settings, app.clock, app.settings.rules, msisdn)
    if as_json:
        emit_json(view.to_json())
    else:
        _print_number(app, view)


def _print_number(app: App, view: NumberView) -> None:
    facts = Table(title=view.msisdn, title_justify="left", show_header=False)
    facts.add_row("state", view.state)
    facts.add_row("owner", view.owner_id or "-")
    facts.add_row("language", view.language or "-")
    facts.add_row("validity end", str(view.validity_end or "-"))
    facts.add_row("grace end", str(view.grace_end or "-"))
    facts.add_row("days left", "-" if view.days_left is None else str(view.days_left))
    facts.add_row("cycle", str(view.cycle))
    app.console.print(facts)
    zone = app.settings.zone
    _print_rows(
        app,
        "Warnings",
        view.warnings,
        ("kind", "cycle", "stage", "state", "queued_on", "final_on", "cancel_reason", "error_code"),
    )
    _print_rows(
        app,
        f"Requests to take it from its owner ({app.settings.timezone})",
        [
            _local_times(row, zone, ("requested_at", "cooloff_until", "decided_at"))
            for row in view.requests
        ],
        (
            "id",
            "kind",
            "state",
            "from_owner",
            "to_owner",
            "requested_at",
            "requested_by",
            "cooloff_until",
            "notice_state",
            "decided_at",
            "decided_by",
            "consent_current",
            "consent_new",
            "reason",
        ),
    )
    _print_rows(
        app, "Resale pool", view.pool, ("entered_on", "available_from", "left_on", "left_cause")
    )
    _print_rows(
        app,
        "Owners",
        [_local_times(row, zone, ("started_at", "ended_at")) for row in view.ownerships],
        (
            "owner_id",
            "started_at",
            "start_cause",
            "ended_at",
            "end_cause",
            "reason",
            "consent_current",
            "consent_new",
        ),
    )
    _print_rows(
        app,
        f"Checks by banks ({app.settings.timezone})",
        [_local_times(row, zone, ("occurred_at",)) for row in view.checks],
        ("occurred_at", "client_id", "specified_date", "recycled", "code", "correlator"),
    )
    _print_rows(
        app,
        f"History ({app.settings.timezone})",
        [_local_times(row, zone, ("occurred_at",)) for row in view.events],
        ("occurred_at", "event_type", "actor", "owner_id", "stage", "reason"),
    )


def _local_times(row: dict[str, Any], zone: ZoneInfo, keys: tuple[str, ...]) -> dict[str, Any]:
    """Moments as the operator reads them: local, to the minute."""
    shown = dict(row)
    for key in keys:
        if shown.get(key):
            moment = datetime.fromisoformat(shown[key]).astimezone(zone)
            shown[key] = moment.strftime("%Y-%m-%d %H:%M")
    return shown


def _print_rows(app: App, title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("" if row.get(column) is None else str(row[column]) for column in columns))
    app.console.print(table)
