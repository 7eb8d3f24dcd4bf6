"""Staging tables: a file's rows land here first, then one set-based merge applies them.

Each staging table is declared from a named row type (one NamedTuple per kind of file): the
parser builds rows of that type, the table's columns and the COPY column list come from its
field names, so a column added in one place cannot shift the values of the others.

PostgreSQL loads through ``COPY … FROM STDIN``; SQLite through batched ``executemany`` on the
driver, values written as SQLAlchemy itself stores them there. Either way rows stream from the
file to the database in batches, so memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import islice
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.database.schema import UtcDateTime

__all__ = [
    "StagingTable",
    "SubscriberRow",
    "TopupRow",
    "staging_table",
    "subscriber_staging",
    "topup_staging",
]

_BATCH = 10_000
_metadata = sa.MetaData()


class SubscriberRow(NamedTuple):
    """One line of a subscriber file, parsed (or refused: ``reject`` says why)."""

    line: int
    raw: str
    msisdn: str | None
    owner_id: str | None
    language: str | None
    validity_end: date | None
    owner_since: date | None
    reject: str | None


class TopupRow(NamedTuple):
    """One line of a top-up file, parsed (or refused: ``reject`` says why)."""

    line: int
    raw: str
    topup_id: str | None
    msisdn: str | None
    topped_up_at: datetime | None
    validity_end: date | None
    amount: Decimal | None
    reject: str | None


# The column type of every field a row type may have.
_TYPES: dict[str, Any] = {
    "line": sa.Integer,
    "raw": sa.Text,
    "msisdn": sa.String(16),
    "owner_id": sa.String(64),
    "language": sa.String(2),
    "validity_end": sa.Date,
    "owner_since": sa.Date,
    "topup_id": sa.String(64),
    "topped_up_at": UtcDateTime,
    "amount": sa.Numeric(14, 2),
    "history": sa.String(8),
    "reject": sa.Text,  # why the row is refused; empty for a row that may be applied
}


def staging_table(name: str, row_type: type[tuple[Any, ...]]) -> sa.Table:
    """A temporary table with a column per field of the row type, in its order, plus the
    outcome the merge fills in (created, extended, unchanged, …)."""
    fields: tuple[str, ...] = row_type._fields  # type: ignore[attr-defined]
    return sa.Table(
        name,
        _metadata,
        *(
            sa.Column(field, _TYPES[field], primary_key=field == "line", nullable=field != "raw")
            for field in fields
        ),
        sa.Column("outcome", sa.String(16)),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


subscriber_staging = staging_table("staging_subscribers", SubscriberRow)
topup_staging = staging_table("staging_topups", TopupRow)


def _sqlite_moment(value: datetime) -> str:
    # As SQLAlchemy's UtcDateTime stores a moment on SQLite: naive UTC text.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# How SQLite is handed each kind of value (the driver would pick other text forms).
_SQLITE_VALUES: dict[type, Callable[[Any], Any]] = {
    date: date.isoformat,
    datetime: _sqlite_moment,
    Decimal: str,
}


class StagingTable:
    """One import's staging table, created in the import's transaction."""

    def __init__(self, connection: Connection, table: sa.Table) -> None:
        self.connection = connection
        self.table = table
        # The columns a parsed row fills; the merge fills the outcome.
        self.columns = [column.name for column in table.columns if column.name != "outcome"]
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{table.name}")
        table.create(connection)

    def load(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Stream rows (of the table's row type) into the table."""
        if self.connection.dialect.name == "postgresql":
            self._copy(rows)
        else:
            self._insert(rows)

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

    def _insert(self, rows: Iterable[tuple[Any, ...]]) -> None:
        driver_connection = self.connection.connection.driver_connection
        assert driver_connection is not None
        statement = (
            f"INSERT INTO {self.table.name} ({', '.join(self.columns)}) "
            f"VALUES ({', '.join('?' * len(self.columns))})"
        )
        # Only the columns whose values SQLite is handed in another form are looked at.
        conversions = [
            (index, _SQLITE_VALUES[kind])
            for index, name in enumerate(self.columns)
            if (kind := _python_type(self.table.c[name].type)) in _SQLITE_VALUES
        ]

        def for_sqlite(row: tuple[Any, ...]) -> list[Any]:
            values = list(row)
            for index, convert in conversions:
                if values[index] is not None:
                    values[index] = convert(values[index])
            return values

        cursor = driver_connection.cursor()
        try:
            for batch in _batches(rows):
                cursor.executemany(statement, [for_sqlite(row) for row in batch])
        finally:
            cursor.close()


def _python_type(column_type: sa.types.TypeEngine[Any]) -> type:
    """The Python type of a column's values (a decorated type's: a moment is a datetime)."""
    if isinstance(column_type, sa.types.TypeDecorator):
        column_type = column_type.impl_instance
    kind: type = column_type.python_type
    return kind


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, _BATCH)):
        yield batch
