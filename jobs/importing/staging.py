"""Staging tables: a file's rows land here first, then one set-based merge applies them.

PostgreSQL loads through ``COPY … FROM STDIN``; SQLite through batched ``executemany``. Either way
rows stream from the file to the database in batches, so memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.database.schema import UtcDateTime

__all__ = ["StagingTable", "subscriber_staging", "topup_staging"]

_BATCH = 10_000
_metadata = sa.MetaData()


def _staging(name: str, *columns: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        name,
        _metadata,
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("raw", sa.Text, nullable=False),
        *columns,
        # Why the row is refused; empty for a row that may be applied.
        sa.Column("reject", sa.Text),
        # What applying the row did, filled in by the merge: created, extended, unchanged, ...
        sa.Column("outcome", sa.String(16)),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


subscriber_staging = _staging(
    "staging_subscribers",
    sa.Column("msisdn", sa.String(16)),
    sa.Column("owner_id", sa.String(64)),
    sa.Column("language", sa.String(2)),
    sa.Column("validity_end", sa.Date),
)

topup_staging = _staging(
    "staging_topups",
    sa.Column("topup_id", sa.String(64)),
    sa.Column("msisdn", sa.String(16)),
    sa.Column("topped_up_at", UtcDateTime),
    sa.Column("validity_end", sa.Date),
    sa.Column("amount", sa.Numeric(14, 2)),
)


class StagingTable:
    """One import's staging table, created in the import's transaction."""

    def __init__(self, connection: Connection, table: sa.Table) -> None:
        self.connection = connection
        self.table = table
        # The columns a parsed row fills; the merge fills the others.
        self.columns = [column.name for column in table.columns if column.name != "outcome"]
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{table.name}")
        table.create(connection)

    def load(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Stream rows (tuples in column order) into the table."""
        if self.connection.dialect.name == "postgresql":
            self._copy(rows)
        else:
            statement = self.table.insert()
            for batch in _batches(rows):
                self.connection.execute(
                    statement, [dict(zip(self.columns, row, strict=True)) for row in batch]
                )

    def index(self, *column_names: str) -> None:
        """Index the loaded rows for the merge's lookups."""
        for name in column_names:
            sa.Index(f"ix_{self.table.name}_{name}", self.table.c[name]).create(self.connection)
            self.table.indexes.clear()
        if self.connection.dialect.name == "postgresql":
            # Fresh temporary tables have no statistics; without them the merge plans blind.
            self.connection.exec_driver_sql(f"ANALYZE {self.table.name}")

    def _copy(self, rows: Iterable[tuple[Any, ...]]) -> None:
        driver_connection = self.connection.connection.driver_connection
        assert driver_connection is not None
        statement = f"COPY {self.table.name} ({', '.join(self.columns)}) FROM STDIN"
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, _BATCH)):
        yield batch
