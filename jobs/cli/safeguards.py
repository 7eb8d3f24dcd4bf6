"""``recycler hold / release / transfer / reinstate / pool / reassigned``: the safeguards."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from jobs.cli.app import DATE, App, configure, emit_json, pass_app
from jobs.clock import local_date
from jobs.errors import InputRefused, NumberNotFound
from jobs.phone import number_from_user
from jobs.safeguards.changes import Change, Operator, TakenByAnother
from jobs.safeguards.ownership import Safeguards
from jobs.safeguards.pool import POOL_COLUMNS, Which, pool_entries
from jobs.safeguards.reassigned import disconnections, reassigned
from jobs.safeguards.requests import FourEyes, Request
from jobs.vocabulary import Language, RequestKind, Verdict

_REASON = click.option("--reason", required=True, help="Why (recorded with the change).")
_ACTOR = click.option(
    "--actor", help="Who acts (recorded with the change); default: the operating-system user."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _operator(app: App, actor: str | None, reason: str) -> Operator:
    return Operator(actor=actor or app.actor, reason=reason)


def _safeguards(app: App) -> Safeguards:
    return Safeguards.of(app.database(), app.settings, app.clock)


def _number(app: App, text: str) -> str:
    """The number the user typed, in E.164: read here, at the edge, before any transaction."""
    return number_from_user(text, app.settings.default_region)


def _report(change: Change, as_json: bool) -> None:
    if as_json:
        emit_json(change.to_json())
    else:
        click.echo(change.summary)


@click.command("hold")
@click.argument("msisdn")
@_REASON
@_ACTOR
@_JSON
@pass_app
def hold_command(app: App, msisdn: str, reason: str, actor: str | None, as_json: bool) -> None:
    """Put a number on hold: no warnings, no recycle, no sale, no transfer until released."""
    configure(app)
    _report(
        _safeguards(app).hold(_number(app, msisdn), _operator(app, actor, reason)),
        as_json,
    )


@click.command("release")
@click.argument("msisdn")
@_REASON
@_ACTOR
@_JSON
@pass_app
def release_command(app: App, msisdn: str, reason: str, actor: str | None, as_json: bool) -> None:
    """Lift a hold; the number's warnings start over."""
    configure(app)
    _report(
        _safeguards(app).release(_number(app, msisdn), _operator(app, actor, reason)),
        as_json,
    )


def _four_eyes(app: App) -> FourEyes:
    return FourEyes.of(app.database(), app.settings, app.clock)


def _report_request(app: App, request: Request, as_json: bool) -> None:
    if as_json:
        emit_json(request.to_json())
        return
    zone = app.settings.zone
    what = (
        f"transfer of {request.msisdn} from {request.from_owner} to {request.to_owner}"
        if request.kind == RequestKind.TRANSFER
        else f"reinstatement of {request.msisdn}: from {request.from_owner} back to "
        f"{request.to_owner}"
    )
    click.echo(f"request {request.id} opened: {what}")
    click.echo(f"  the owner's notice is queued (message {request.notice_id}): `recycler send`")
    if request.cooloff_until > request.requested_at:
        click.echo(f"  cool-off until {_local(request.cooloff_until, zone)}")
    click.echo(
        f"  someone other than {request.requested_by} approves it: "
        f"recycler transfer approve {request.id}; it expires "
        f"{_local(request.expires_at, zone)}"
    )


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


class _NoOneStepTransfer(click.Group):
    """``recycler transfer MSISDN --to …`` was the one-step transfer: say what replaced it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            raise click.UsageError(
                "a transfer is no longer made in one step: open a request with "
                f"`recycler transfer request {args[0]} --to OWNER --consent-current REF "
                "--consent-new REF --reason R`; someone else approves it after the cool-off",
                ctx,
            )
        return super().parse_args(ctx, args)


@click.group("transfer", cls=_NoOneStepTransfer)
def transfer_group() -> None:
    """Moving a number from its owner to another person: four eyes.

    \b
    request  open a request (the owner is sent a notice at once)
    approve  someone else carries it out, after the cool-off and the notice
    reject   end it, nothing changes
    object   the owner objected: end it and hold the number
    list     the requests, with their evidence, notice and outcome
    """


@transfer_group.command("request")
@click.argument("msisdn")
@click.option("--to", "to_owner", required=True, help="The new owner's id.")
@click.option("--consent-current", required=True, help="Reference of the current owner's consent.")
@click.option("--consent-new", required=True, help="Reference of the new owner's consent.")
@click.option(
    "--language",
    type=click.Choice([str(language) for language in Language]),
    help="The new owner's language (default: the current owner's).",
)
@_REASON
@_ACTOR
@_JSON
@pass_app
def transfer_request_command(
    app: App,
    msisdn: str,
    to_owner: str,
    consent_current: str,
    consent_new: str,
    language: str | None,
    reason: str,
    actor: str | None,
    as_json: bool,
) -> None:
    """Ask to give an active or in-grace number to a new owner, with both owners' consent on
    record. The number's owner is sent a notice at once; someone else approves the request
    after the cool-off (transfer_cooloff_hours)."""
    configure(app)
    request = _four_eyes(app).request_transfer(
        _number(app, msisdn),
        _operator(app, actor, reason),
        to_owner=to_owner,
        consent_current=consent_current,
        consent_new=consent_new,
        language=language,
    )
    _report_request(app, request, as_json)


@transfer_group.command("approve")
@click.argument("request_id", type=int)
@click.option("--reason", default="approved", show_default=True, help="Why (recorded).")
@click.option(
    "--notice-failed",
    help="Approve although the owner's notice failed for good: how the owner was reached.",
)
@_ACTOR
@_JSON
@pass_app
def transfer_approve_command(
    app: App,
    request_id: int,
    reason: str,
    notice_failed: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Carry out a request, as a second person: everything is checked again (same owner as at
    the request, not on hold, cool-off over, the owner's notice gone, not expired)."""
    configure(app)
    change = _four_eyes(app).approve(
        request_id, _operator(app, actor, reason), notice_failed=notice_failed
    )
    _report(change, as_json)


@transfer_group.command("reject")
@click.argument("request_id", type=int)
@_REASON
@_ACTOR
@_JSON
@pass_app
def transfer_reject_command(
    app: App, request_id: int, reason: str, actor: str | None, as_json: bool
) -> None:
    """End a pending request; nothing changes hands."""
    configure(app)
    _report(_four_eyes(app).reject(request_id, _operator(app, actor, reason)), as_json)


@transfer_group.command("object")
@click.argument("request_id", type=int)
@_REASON
@_ACTOR
@_JSON
@pass_app
def transfer_object_command(
    app: App, request_id: int, reason: str, actor: str | None, as_json: bool
) -> None:
    """The owner objected (they called the care line): end the request and put the number on
    hold at once."""
    configure(app)
    _report(_four_eyes(app).object(request_id, _operator(app, actor, reason)), as_json)


@transfer_group.command("list")
@click.option("--pending", is_flag=True, help="Only the requests still waiting for a decision.")
@_JSON
@pass_app
def transfer_list_command(app: App, pending: bool, as_json: bool) -> None:
    """The requests, oldest first: who asked, the evidence, the notice, who decided, and how."""
    configure(app)
    requests = _four_eyes(app).requests(pending=pending)
    if as_json:
        emit_json([request.to_json() for request in requests])
        return
    zone = app.settings.zone
    table = Table(
        title=f"Requests ({app.settings.timezone})" + (", pending" if pending else ""),
        title_justify="left",
    )
    for heading in (
        "id",
        "number",
        "kind",
        "state",
        "from",
        "to",
        "requested",
        "by",
        "cool-off until",
        "notice",
        "decided",
        "decided by",
        "reason",
    ):
        table.add_column(heading)
    for request in requests:
        table.add_row(
            str(request.id),
            request.msisdn,
            request.kind,
            request.state,
            request.from_owner,
            request.to_owner,
            _local(request.requested_at, zone),
            request.requested_by,
            _local(request.cooloff_until, zone),
            request.notice_state or "-",
            _local(request.decided_at, zone) if request.decided_at else "-",
            request.decided_by or "-",
            request.reason,
        )
    app.console.print(table)


@click.command("reinstate")
@click.argument("msisdn")
@_REASON
@click.option(
    "--validity-end", type=DATE, help="The validity end to give back (default: the old one)."
)
@click.option(
    "--force",
    is_flag=True,
    help="The number was sold or transferred since: open a request to take it back from its "
    "holder, which someone else approves.",
)
@_ACTOR
@_JSON
@pass_app
def reinstate_command(
    app: App,
    msisdn: str,
    reason: str,
    validity_end: date | None,
    force: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Give a recycled number back to its previous owner (out of the pool, warnings re-armed).

    A number already sold (or transferred) goes back only with --force, which opens a request:
    its holder is sent a notice, and someone else approves it (`recycler transfer approve`).
    """
    configure(app)
    number = _number(app, msisdn)
    operator = _operator(app, actor, reason)
    try:
        change = _safeguards(app).reinstate(number, operator, validity_end=validity_end)
    except TakenByAnother:
        if not force:
            raise
        request = _four_eyes(app).request_reinstatement(number, operator, validity_end=validity_end)
        _report_request(app, request, as_json)
    else:
        _report(change, as_json)


@click.group("pool")
def pool_group() -> None:
    """The resale pool: list it, sell from it."""


@pool_group.command("list")
@click.option("--available", "which", flag_value="available", help="Only numbers for sale now.")
@click.option("--quarantined", "which", flag_value="quarantined", help="Only those not yet.")
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write CSV here."
)
@_JSON
@pass_app
def pool_list_command(app: App, which: str | None, csv_path: Path | None, as_json: bool) -> None:
    """The numbers in the pool, oldest first."""
    configure(app)
    chosen: Which = (
        "available"
        if which == "available"
        else ("quarantined" if which == "quarantined" else "all")
    )
    today = local_date(app.clock.now(), app.settings.zone)
    entries = pool_entries(app.database(), today, chosen)
    if csv_path is not None:
        count = _write_csv(csv_path, entries, list(POOL_COLUMNS))
        click.echo(f"{count} numbers written to {csv_path}", err=as_json)
    elif as_json:
        _stream_json(entries)
    else:
        table = Table(title=f"Resale pool on {today.isoformat()}", title_justify="left")
        for heading in ("number", "state", "entered", "available from", "previous owner"):
            table.add_column(heading)
        for entry in entries:
            table.add_row(
                entry["msisdn"],
                entry["state"],
                entry["entered_on"],
                entry["available_from"],
                entry["previous_owner"],
            )
        app.console.print(table)


@pool_group.command("sell")
@click.argument("msisdn")
@click.option("--owner", required=True, help="The buyer's owner id.")
@click.option(
    "--language",
    type=click.Choice([str(language) for language in Language]),
    default=str(Language.KHMER),
    show_default=True,
)
@click.option("--validity-end", type=DATE, required=True, help="The new owner's validity end.")
@click.option("--reason", default="sale from the resale pool", show_default=True, help="Why.")
@_ACTOR
@_JSON
@pass_app
def pool_sell_command(
    app: App,
    msisdn: str,
    owner: str,
    language: str,
    validity_end: date,
    reason: str,
    actor: str | None,
    as_json: bool,
) -> None:
    """Sell an available number (past quarantine, not held) to a new owner."""
    configure(app)
    change = _safeguards(app).sell(
        _number(app, msisdn),
        _operator(app, actor, reason),
        owner=owner,
        language=language,
        validity_end=validity_end,
    )
    _report(change, as_json)


class _CheckByDefault(click.Group):
    """``recycler reassigned MSISDN --since D`` is ``recycler reassigned check MSISDN --since D``:
    a first argument that names no subcommand is a number to check."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


@click.group("reassigned", cls=_CheckByDefault)
def reassigned_group() -> None:
    """Has a number changed hands since a date? And which numbers changed hands in a month.

    \b
    recycler reassigned 012345678 --since 2026-01-15
    recycler reassigned export --month 2026-10 --csv disconnected-2026-10.csv
    """


@reassigned_group.command("check")
@click.argument("msisdn")
@click.option("--since", type=DATE, required=True, help="The date to ask about (YYYY-MM-DD).")
@_JSON
@pass_app
def reassigned_check_command(app: App, msisdn: str, since: date, as_json: bool) -> None:
    """Has MSISDN changed hands since a date? "no" only when it has an owner now who has held it
    since that date or earlier; "yes" otherwise (a new owner since, or none at all now);
    "unknown" when recycler's records of it begin after that date. A date after today is
    refused. This is the answer the API gives banks (phoneNumberRecycled)."""
    configure(app)
    number = number_from_user(msisdn, app.settings.default_region)
    try:
        answer = reassigned(app.database(), app.settings, app.clock, number, since)
    except NumberNotFound:
        if as_json:
            emit_json({"msisdn": number, "since": since.isoformat(), "reassigned": "unknown"})
        else:
            click.echo(f"unknown: {number} since {since.isoformat()}: recycler has no record of it")
        return
    if as_json:
        emit_json(answer.to_json())
        return
    if answer.verdict is Verdict.SAME_OWNER:
        detail = f"the same owner since {answer.owner_since}"
    elif answer.verdict is Verdict.BEFORE_RECORDS:
        detail = f"recycler's records of it begin on {answer.records_from}"
    elif answer.owner_since is None:
        detail = "it has no owner now (in the resale pool)"
    else:
        detail = f"its current owner has held it since {answer.owner_since}"
    click.echo(f"{answer.verdict}: {answer.msisdn} since {since.isoformat()}: {detail}")


@reassigned_group.command("export")
@click.option("--month", required=True, help="The month, YYYY-MM.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write.",
)
@_JSON
@pass_app
def reassigned_export_command(app: App, month: str, csv_path: Path, as_json: bool) -> None:
    """The numbers whose ownership ended in a month (recycled, transferred, taken back), with
    the day and the cause, as a CSV file."""
    configure(app)
    try:
        year, number = (int(part) for part in month.split("-"))
        date(year, number, 1)
    except ValueError:
        raise InputRefused(f"--month {month!r} is not a month (YYYY-MM)") from None
    rows = disconnections(app.database(), app.settings, year, number)
    count = _write_csv(csv_path, rows, ["msisdn", "disconnected_on", "cause"])
    if as_json:
        emit_json({"month": month, "numbers": count, "csv": str(csv_path)})
    else:
        click.echo(f"{count} numbers disconnected in {month}, written to {csv_path}")


def _write_csv(path: Path, rows: Iterable[dict[str, Any]], fieldnames: list[str]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _stream_json(rows: Iterable[dict[str, Any]]) -> None:
    out = sys.stdout
    out.write("[")
    for index, row in enumerate(rows):
        out.write(("," if index else "") + "\n  " + json.dumps(row))
    out.write("\n]\n")
