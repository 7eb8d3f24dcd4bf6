"""``recycler staff`` and ``recycler console``: the people of the console, and the console."""

from __future__ import annotations

import click
import structlog
from rich.table import Table

from jobs.cli.app import App, configure, emit_json, pass_app, serve
from jobs.staff.accounts import (
    NewSecret,
    add_staff,
    disable_staff,
    list_staff,
    reset_staff,
    set_role,
)
from jobs.vocabulary import StaffRole

_ROLE = click.Choice([str(role) for role in StaffRole])
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
_ACTOR = click.option("--actor", help="Who acts (recorded); default: the operating-system user.")


@click.group("staff")
def staff_group() -> None:
    """The console's staff accounts: add, list, disable, reset, change a role.

    \b
    roles: agent (care), supervisor (also approves requests, releases holds),
           auditor (reads everything), admin (manages staff, nothing else)
    """


def _secret(new: NewSecret, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(new.to_json())
        return
    click.echo(f"{new.member.username} {verb} as {new.member.role}")
    click.echo(f"  one-time password: {new.password}   (to be changed at the first sign-in)")
    click.echo(f"  authenticator app: {new.totp_uri}")
    required = "required" if new.member.totp_required else "used when given"
    click.echo(f"  the app's code at sign-in: {required}")


@staff_group.command("add")
@click.argument("username")
@click.option("--role", type=_ROLE, required=True)
@click.option(
    "--totp", is_flag=True, help="Require the second factor (always for supervisors and admins)."
)
@_ACTOR
@_JSON
@pass_app
def staff_add_command(
    app: App, username: str, role: str, totp: bool, actor: str | None, as_json: bool
) -> None:
    """Add a person; prints a one-time password and a TOTP enrolment URI, shown only now."""
    configure(app)
    new = add_staff(
        app.database(), username, role, totp=totp, actor=actor or app.actor, now=app.clock.now()
    )
    _secret(new, as_json, "added")


@staff_group.command("list")
@_JSON
@pass_app
def staff_list_command(app: App, as_json: bool) -> None:
    """Every account, with its role and whether it is locked or disabled."""
    configure(app)
    members = list_staff(app.database())
    if as_json:
        emit_json([member.to_json() for member in members])
        return
    table = Table(title="Staff", title_justify="left")
    for heading in ("username", "role", "second factor", "state", "added", "by"):
        table.add_column(heading)
    now = app.clock.now()
    for member in members:
        state = (
            "disabled"
            if member.disabled_at
            else "locked"
            if member.locked_until and member.locked_until > now
            else "new password due"
            if member.password_is_temporary
            else "active"
        )
        table.add_row(
            member.username,
            str(member.role),
            "required" if member.totp_required else "optional",
            state,
            member.created_at.strftime("%Y-%m-%d"),
            member.created_by,
        )
    app.console.print(table)


@staff_group.command("disable")
@click.argument("username")
@_ACTOR
@_JSON
@pass_app
def staff_disable_command(app: App, username: str, actor: str | None, as_json: bool) -> None:
    """No more sign-ins; the person's open sessions end."""
    configure(app)
    member = disable_staff(app.database(), username, actor=actor or app.actor, now=app.clock.now())
    if as_json:
        emit_json(member.to_json())
    else:
        click.echo(f"{member.username} is disabled")


@staff_group.command("reset")
@click.argument("username")
@_ACTOR
@_JSON
@pass_app
def staff_reset_command(app: App, username: str, actor: str | None, as_json: bool) -> None:
    """A new one-time password and a new second factor; unlocked and enabled again."""
    configure(app)
    new = reset_staff(app.database(), username, actor=actor or app.actor, now=app.clock.now())
    _secret(new, as_json, "reset")


@staff_group.command("role")
@click.argument("username")
@click.option("--role", type=_ROLE, required=True)
@_ACTOR
@_JSON
@pass_app
def staff_role_command(
    app: App, username: str, role: str, actor: str | None, as_json: bool
) -> None:
    """Give a person another role."""
    configure(app)
    member = set_role(app.database(), username, role, actor=actor or app.actor, now=app.clock.now())
    if as_json:
        emit_json(member.to_json())
    else:
        click.echo(f"{member.username} is now {member.role}")


@click.command("console")
@pass_app
def console_command(app: App) -> None:
    """Serve the care and operations console on console_host:console_port, until SIGTERM."""
    configure(app)
    from jobs.console import create_console  # noqa: PLC0415

    settings = app.settings
    application = create_console(app.database(), settings, app.clock)
    structlog.get_logger("recycler.console").info(
        "console.starting", address=f"http://{settings.console_host}:{settings.console_port}"
    )
    serve(application, settings.console_host, settings.console_port, "the console")
