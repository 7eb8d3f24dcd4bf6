"""Pieces the subscriber and top-up imports share: field parsing, locking, audit, cancellation."""

from __future__ import annotations

import functools
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from jobs.clock import out_of_range, parse_date
from jobs.database.schema import (
    numbers,
    ownerships,
    topups,
)
from jobs.transitions import note_changes, work_table

__all__ = [
    "DayReader",
    "add_owned_numbers",
    "insert_topups",
]


class DayReader:
    """A date column's verdicts (``parse_date`` then ``out_of_range``), remembered by text: a
    file's dates repeat (a few hundred validity ends among millions of rows), and reading each
    anew cost about a microsecond a row. The most recent ten thousand texts are kept, so that a
    file of random dates does not grow memory."""

    def __init__(self, column: str) -> None:
        self.column = column
        self._verdict = functools.lru_cache(maxsize=10_000)(self._read)

    def __call__(self, text: str) -> date | str:
        """The date, or why the text is refused (the reject's sentence)."""
        return self._verdict(text)

    def _read(self, text: str) -> date | str:
        try:
            day = parse_date(text)
        except ValueError as error:
            return f"bad {self.column}: {error}"
        return out_of_range(day, self.column) or day


# The new numbers of one import or seed, copied from its staging table in key order.
_NEW_NUMBERS = sa.Table(
    "staging_new_numbers",
    sa.MetaData(),
    sa.Column("msisdn", sa.String(16), nullable=False),
    sa.Column("owner_id", sa.String(64), nullable=False),
    sa.Column("language", sa.String(2), nullable=False),
    sa.Column("validity_end", sa.Date, nullable=False),
    sa.Column("owner_since", sa.Date),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def add_owned_numbers(
    connection: Connection,
    source: sa.Table,
    condition: ColumnElement[bool],
    *,
    now: datetime,
    today: date,
    actor: str,
    cause: str,
) -> sa.Table:
    """New numbers, each with an open ownership, from the rows of a staging table (msisdn,
    owner_id, language, validity_end, perhaps owner_since) that meet the condition. Returns the
    work table that holds them, for the caller's events.

    The rows are first copied, in key order, into a narrow work table that the inserts then
    read as it is stored (an order that only speed depends on): the ownerships', numbers' and
    events' indexes grow at their right edge, and the staging table (its rows in the file's
    order, with their raw text) is walked once by its index instead of once per insert. A
    million numbers from a file not in number order imported in 28-37 s this way against
    37-46 s on SQLite, and in 37-45 s against 43-56 s on PostgreSQL (docs/scaling.md,
    2026-11-27). The ownerships are written first: the database checks each new number's
    ownership at the end of the statement that adds it."""
    work = work_table(connection, _NEW_NUMBERS)
    columns = [column.name for column in work.columns]
    connection.execute(
        work.insert().from_select(
            columns,
            sa.select(
                *(
                    source.c[name] if name in source.c else sa.null().cast(work.c[name].type)
                    for name in columns
                )
            )
            .where(condition)
            .order_by(source.c.msisdn),
        )
    )
    connection.execute(
        ownerships.insert().from_select(
            [
                "msisdn",
                "owner_id",
                "language",
                "started_at",
                "started_on",
                "start_cause",
                "started_by",
                "owner_since",
            ],
            sa.select(
                work.c.msisdn,
                work.c.owner_id,
                work.c.language,
                sa.literal(now, ownerships.c.started_at.type),
                sa.literal(today, sa.Date),
                sa.literal(cause),
                sa.literal(actor),
                work.c.owner_since,
            ),
        )
    )
    connection.execute(
        numbers.insert().from_select(
            ["msisdn", "owner_id", "language", "validity_end", "cycle", "on_hold", "updated_at"],
            sa.select(
                work.c.msisdn,
                work.c.owner_id,
                work.c.language,
                work.c.validity_end,
                sa.literal(1),
                sa.false(),
                sa.literal(now, numbers.c.updated_at.type),
            ),
        )
    )
    note_changes(connection, sa.select(work.c.msisdn))
    return work


def insert_topups(
    connection: Connection,
    source: sa.FromClause,
    staged: sa.Table,
    condition: ColumnElement[bool],
    *,
    import_id: int,
    moved_validity: ColumnElement[bool],
) -> None:
    """Store the staged top-ups that meet the condition, under their import."""
    connection.execute(
        topups.insert().from_select(
            [
                "topup_id",
                "msisdn",
                "topped_up_at",
                "validity_end",
                "amount",
                "import_id",
                "moved_validity",
            ],
            sa.select(
                staged.c.topup_id,
                staged.c.msisdn,
                staged.c.topped_up_at,
                staged.c.validity_end,
                staged.c.amount,
                sa.literal(import_id),
                moved_validity,
            )
            .select_from(source)
            .where(condition),
        )
    )
