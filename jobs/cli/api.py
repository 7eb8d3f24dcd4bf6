"""``recycler api`` and ``recycler api-client``: the reassigned check for banks, over HTTP."""

from __future__ import annotations

from datetime import date, datetime, time

import click
import structlog
from rich.table import Table

from jobs.checking.clients import CHECK_SCOPE, SCOPES, add_client, list_clients, revoke_client
from jobs.checking.clients import usage as client_usage
from jobs.cli.app import DATE, App, configure, emit_json, pass_app, serve


@click.command("api")
@pass_app
def api_command(app: App) -> None:
    """Serve the CAMARA Number Recycling API (POST /number-recycling/v0.2/check), its
    authorization server (/oauth2/token, /.well-known/jwks.json, /.well-known/
    openid-configuration), /healthz and /metrics, on api_host:api_port, until SIGTERM."""
    configure(app)
    from jobs.api import create_app, token_authority  # noqa: PLC0415

    settings = app.settings
    authority = token_authority(settings)
    database = app.database(connections=settings.api_database_connections)
    application = create_app(database, settings, app.clock, authority)
    structlog.get_logger("recycler.api").info(
        "api.starting",
        address=f"http://{settings.api_host}:{settings.api_port}",
        issuer=authority.issuer,
        identity_provider=settings.api_issuer,
        rate_per_client=settings.api_rate_per_client,
    )
    serve(application, settings.api_host, settings.api_port, "the API")


@click.group("api-client")
def api_client_group() -> None:
    """The clients (banks) of the API: add, list, revoke, and how much each asked."""


@api_client_group.command("add")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(sorted(SCOPES)),
    default=[CHECK_SCOPE],
    show_default=True,
    help="A scope the client may ask tokens for (repeat for several).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the client as JSON.")
@pass_app
def api_client_add(app: App, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Add a client; its secret is printed once and kept only as a hash."""
    configure(app)
    added = add_client(
        app.database(), name=name, scopes=list(scopes), actor=app.actor, now=app.clock.now()
    )
    if as_json:
        emit_json(added.to_json())
        return
    click.echo(f"client_id:     {added.client.client_id}")
    click.echo(f"client_secret: {added.client_secret}")
    click.echo(f"scopes:        {' '.join(sorted(added.client.scopes))}")
    click.echo("The secret is shown only now; give it to the client over a safe channel.", err=True)


@api_client_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the clients as JSON.")
@pass_app
def api_client_list(app: App, as_json: bool) -> None:
    """Every client, revoked ones included (never their secrets)."""
    configure(app)
    clients = list_clients(app.database())
    if as_json:
        emit_json([client.to_json() for client in clients])
        return
    table = Table(title="API clients", title_justify="left")
    for heading in ("client_id", "name", "scopes", "added", "by", "revoked"):
        table.add_column(heading)
    for client in clients:
        table.add_row(
            client.client_id,
            client.name,
            " ".join(sorted(client.scopes)),
            client.created_at.isoformat(timespec="minutes"),
            client.created_by,
            client.revoked_at.isoformat(timespec="minutes") if client.revoked_at else "",
        )
    app.console.print(table)


@api_client_group.command("revoke")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print the client as JSON.")
@pass_app
def api_client_revoke(app: App, client_id: str, as_json: bool) -> None:
    """Revoke a client: no new token, and its tokens stop working within seconds."""
    configure(app)
    client = revoke_client(app.database(), client_id, actor=app.actor, now=app.clock.now())
    if as_json:
        emit_json(client.to_json())
    else:
        click.echo(f"{client.client_id} ({client.name}) is revoked")


@api_client_group.command("usage")
@click.option("--since", type=DATE, help="Count checks from this local date on.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_app
def api_client_usage(app: App, since: date | None, as_json: bool) -> None:
    """Checks per client: how many, answered, refused, first and last."""
    configure(app)
    start = (
        datetime.combine(since, time(0), tzinfo=app.settings.zone) if since is not None else None
    )
    rows = client_usage(app.database(), start)
    if as_json:
        emit_json(rows)
        return
    table = Table(title="Checks per client", title_justify="left")
    for heading in ("client_id", "name", "checks", "answered", "refused", "first", "last"):
        table.add_column(heading)
    for row in rows:
        table.add_row(*(str(row[key] if row[key] is not None else "") for key in row))
    app.console.print(table)
