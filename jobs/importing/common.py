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
from jobs.transitions import note_changes

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


def add_owned_numbers(
    connection: Connection,
    source: sa.Table,
    condition: ColumnElement[bool],
    *,
    now: datetime,
    today: date,
    actor: str,
    cause: str,
) -> None:
    """New numbers, each with an open ownership, from the rows of a staging table that has
    msisdn, owner_id, language and validity_end. The ownerships are written first: the
    database checks each new number's ownership at the end of the statement that adds it."""
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
                source.c.msisdn,
                source.c.owner_id,
                source.c.language,
                sa.literal(now, ownerships.c.started_at.type),
                sa.literal(today, sa.Date),
                sa.literal(cause),
                sa.literal(actor),
                source.c.owner_since if "owner_since" in source.c else sa.null().cast(sa.Date),
            )
            .where(condition)
            .order_by(source.c.msisdn),
        )
    )
    connection.execute(
        numbers.insert().from_select(
            ["msisdn", "owner_id", "language", "validity_end", "cycle", "on_hold", "updated_at"],
            sa.select(
                source.c.msisdn,
                source.c.owner_id,
                source.c.language,
                source.c.validity_end,
                sa.literal(1),
                sa.false(),
                sa.literal(now, numbers.c.updated_at.type),
            )
            .where(condition)
            # In key order, the indexes grow at their right edge instead of all over.
            .order_by(source.c.msisdn),
        )
    )
    note_changes(connection, sa.select(source.c.msisdn).where(condition))


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
