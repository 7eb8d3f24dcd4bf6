"""Schema migrations (Alembic), and the check every command makes before it touches data."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from jobs.database.engine import Database
from jobs.errors import SchemaError

__all__ = ["current_revision", "ensure_schema", "head_revision", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration this version of recycler knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The migration the database is at; None when it has no recycler schema yet."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the schema; returns the revision before and after."""
    # SQLite changes a table's constraints by copying the table, which its foreign keys would
    # refuse part-way: its documented procedure turns them off and checks them all at the end.
    with database.write(sqlite_foreign_keys=False) as connection:
        before = current_revision(connection)
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = current_revision(connection)
        if database.is_sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
            if broken is not None:
                raise SchemaError(f"the migration broke a foreign key: {tuple(broken)}")
    assert after is not None
    return before, after


def ensure_schema(database: Database) -> None:
    """Make sure the schema is current before a command uses the database.

    An empty SQLite file is migrated on first use, so that a newcomer needs no setup step.
    Anything else that is not at the newest revision is an error that says what to do, never a
    silent migration of a production database.
    """
    with database.read() as connection:
        current = current_revision(connection)
    head = head_revision()
    if current == head:
        return
    if current is None and database.is_sqlite:
        upgrade(database)
        return
    if current is None:
        raise SchemaError(
            f"the database {database.describe()} has no recycler schema yet; "
            "create it with `recycler db upgrade`"
        )
    raise SchemaError(
        f"the database schema is at revision {current}, this recycler needs {head}; "
        "migrate it with `recycler db upgrade`"
    )
