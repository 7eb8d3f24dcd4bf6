"""The migrations build exactly the declared schema, and commands check the schema first."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from jobs.database.engine import Database
from jobs.database.migrate import (
    _config,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)
from jobs.database.schema import metadata
from jobs.errors import SchemaError
from tests.support.world import World


class TestMigratedSchema:
    """The migrated database and the SQLAlchemy tables agree."""

    def test_no_difference(self, database_url: str) -> None:
        """Alembic finds nothing to autogenerate: tables, columns, types, indexes, defaults."""
        database = Database(database_url)
        try:
            with database.read() as connection:
                context = MigrationContext.configure(
                    connection, opts={"compare_type": True, "compare_server_default": True}
                )
                assert compare_metadata(context, metadata) == []
                assert current_revision(connection) == head_revision()
        finally:
            database.dispose()

    def test_upgrade_again_is_a_no_op(self, database_url: str) -> None:
        """`db upgrade` on a current schema changes nothing."""
        database = Database(database_url)
        try:
            assert upgrade(database) == (head_revision(), head_revision())
        finally:
            database.dispose()


class TestFirstUse:
    """An empty SQLite file is migrated on first use; anything else must be upgraded."""

    def test_empty_sqlite_file_is_created(self, tmp_path: Path) -> None:
        """A newcomer needs no setup step."""
        database = Database(f"sqlite:///{tmp_path / 'new.sqlite3'}")
        ensure_schema(database)
        with database.read() as connection:
            assert current_revision(connection) == head_revision()
            assert "numbers" in sa.inspect(connection).get_table_names()
        database.dispose()

    def test_outdated_sqlite_is_not_migrated_silently(self, tmp_path: Path) -> None:
        """A database at another revision gets a message naming the command to run."""
        database = Database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
        upgrade(database)
        with database.write() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
        with pytest.raises(SchemaError, match=r"recycler db upgrade"):
            ensure_schema(database)
        database.dispose()

    @pytest.mark.postgresql_only
    def test_empty_postgresql_is_refused(self, database_url: str) -> None:
        """Production schemas are created on purpose: the error says how."""
        database = Database(database_url)
        with database.write() as connection:
            for table in reversed(metadata.sorted_tables):
                connection.execute(sa.text(f"DROP TABLE {table.name} CASCADE"))
            connection.execute(sa.text("DROP TABLE alembic_version"))
        with pytest.raises(SchemaError, match=r"has no recycler schema yet; create it with"):
            ensure_schema(database)
        database.dispose()


class TestFourEyesRevision:
    """Revision 0007 goes down (its requests, decisions and owners' notices with it) and up
    again to the declared schema, on both databases."""

    def test_down_and_up_again(self, world: World) -> None:
        msisdn = world.add_number(date(2027, 1, 20), owner_id="alice")
        world.transfer(msisdn, "bob")
        with world.database.write(sqlite_foreign_keys=False) as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
        with world.database.read() as connection:
            tables = sa.inspect(connection).get_table_names()
            assert "transfer_requests" not in tables
            assert "transfer_decisions" not in tables
            assert connection.exec_driver_sql("SELECT count(*) FROM warnings").scalar() == 0
            assert connection.exec_driver_sql(
                "SELECT owner_id FROM numbers"
            ).scalar() == "bob"  # fmt: skip
        assert upgrade(world.database) == ("0006", head_revision())
        with world.database.read() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, metadata) == []
        # The rules are back: a raw owner change is refused again.
        with pytest.raises(sa.exc.DBAPIError), world.database.write() as connection:
            connection.exec_driver_sql(
                f"UPDATE numbers SET owner_id = 'x' WHERE msisdn = '{msisdn}'"
            )
