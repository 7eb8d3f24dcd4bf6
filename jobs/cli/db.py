"""``recycler db``: the schema."""

from __future__ import annotations

import click

from jobs.cli.app import App, configure, emit_json, pass_app
from jobs.database.migrate import upgrade


@click.group("db")
def db_group() -> None:
    """Create or migrate the database schema."""


@db_group.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app
def upgrade_command(app: App, as_json: bool) -> None:
    """Create the schema, or migrate it to this version of recycler (Alembic)."""
    configure(app)
    database = app.database(check_schema=False)
    before, after = upgrade(database)
    if as_json:
        emit_json({"database": database.describe(), "from": before, "to": after})
    elif before == after:
        click.echo(f"{database.describe()}: schema already at revision {after}")
    else:
        click.echo(f"{database.describe()}: schema migrated from {before or 'empty'} to {after}")
