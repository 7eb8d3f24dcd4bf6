"""``recycler import subscribers FILE``: numbers, their owners, languages and validity ends.

A new number starts an ownership. A known number with the same owner may change language and move
its validity end forward (which starts a new cycle); a row naming another owner, or a number in the
resale pool, is refused: ownership changes only through the safeguards.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock
from jobs.database.audit import record_events
from jobs.database.engine import Database, retried
from jobs.database.schema import (
    numbers,
    ownerships,
    resale_pool,
)
from jobs.fast_numbers import NumberReader
from jobs.importing import common
from jobs.importing.loader import ImportContext, ImportSummary, run_import
from jobs.importing.reader import CsvFormat, RawRow
from jobs.importing.staging import StagingTable, SubscriberRow, subscriber_staging
from jobs.phone import InvalidNumber
from jobs.settings import Settings
from jobs.transitions import end_cycles, note_changes
from jobs.vocabulary import AuditEvent, CycleEnd, Language, OwnershipStart

__all__ = ["SUBSCRIBERS", "import_subscribers"]

SUBSCRIBERS = CsvFormat(
    "subscribers",
    "subscriber",
    ("msisdn", "owner_id", "language", "validity_end"),
    optional=("owner_since",),
)
LANGUAGES = tuple(Language)
_MAX_OWNER = 64


class _Parser:
    """Turns one raw row of a subscriber file into a staging row."""

    def __init__(self, context: ImportContext) -> None:
        settings = context.settings
        self.number = NumberReader(settings.default_region, settings.regions)
        self.today = context.today
        self.validity_end = common.DayReader("validity_end")
        self.owner_since = common.DayReader("owner_since")

    def __call__(self, row: RawRow) -> SubscriberRow:
        line, fields, raw, problem = row
        if problem is not None:
            return _refused(row, problem)
        written, owner, language, validity_text, since_text = fields
        try:
            msisdn = self.number(written)
        except InvalidNumber as error:
            return _refused(row, f"bad msisdn: {error}")
        if not owner:
            return _refused(row, "empty owner_id")
        if len(owner) > _MAX_OWNER:
            return _refused(row, f"owner_id longer than {_MAX_OWNER} characters")
        if language not in LANGUAGES:
            language = language.lower()
            if language not in LANGUAGES:
                return _refused(row, f"unknown language {fields[2]!r} (expected km or en)")
        validity_end = self.validity_end(validity_text)
        if isinstance(validity_end, str):
            return _refused(row, validity_end)
        owner_since: date | None = None
        if since_text:
            since = self.owner_since(since_text)
            if isinstance(since, str):
                return _refused(row, since)
            if since > self.today:
                return _refused(row, f"owner_since {since_text} is after today")
            owner_since = since
        return SubscriberRow(line, raw, msisdn, owner, language, validity_end, owner_since, None)


def _refused(row: RawRow, reason: str) -> SubscriberRow:
    return SubscriberRow(row.line, row.raw, None, None, None, None, None, reason)


def _merge(
    connection: Connection, staging: StagingTable, context: ImportContext, import_id: int
) -> None:
    """Applies the rows; the new numbers' rows are left unmarked (counted as created)."""
    table = staging.table
    good = table.c.reject.is_(None)
    connection.execute(
        sa.update(table)
        .where(good, table.c.msisdn == numbers.c.msisdn, numbers.c.owner_id.is_not(None))
        .where(numbers.c.owner_id != table.c.owner_id)
        .values(
            reject=sa.literal("the number belongs to owner ")
            + numbers.c.owner_id
            + sa.literal("; ownership changes only through `recycler transfer request`")
        )
    )
    connection.execute(
        sa.update(table)
        .where(
            good,
            table.c.msisdn == resale_pool.c.msisdn,
            resale_pool.c.left_at.is_(None),
        )
        .values(
            reject=sa.literal("the number is in the resale pool since ")
            + sa.cast(resale_pool.c.entered_on, sa.String)
            + sa.literal("; it changes owner only through `recycler pool sell` or `reinstate`")
        )
    )
    # A file may say since when an owner has held a number once; saying something else later
    # contradicts the record.
    connection.execute(
        sa.update(table)
        .where(
            good,
            table.c.owner_since.is_not(None),
            table.c.msisdn == ownerships.c.msisdn,
            ownerships.c.ended_at.is_(None),
            ownerships.c.owner_since.is_not(None),
            ownerships.c.owner_since != table.c.owner_since,
        )
        .values(
            reject=sa.literal("owner_since contradicts the recorded ")
            + sa.cast(ownerships.c.owner_since, sa.String)
        )
    )
    # Only the rows of numbers already known get an outcome written; the rest, by far the most
    # on a first import, are the new numbers, left unmarked rather than rewritten.
    connection.execute(
        sa.update(table)
        .where(good, table.c.outcome.is_(None), table.c.msisdn == numbers.c.msisdn)
        .values(
            outcome=sa.case(
                (table.c.validity_end > numbers.c.validity_end, "extended"),
                (table.c.language != numbers.c.language, "language"),
                else_="unchanged",
            )
        )
    )
    _create(connection, table, context)
    _extend(connection, table, context)
    connection.execute(
        sa.update(numbers)
        .where(table.c.msisdn == numbers.c.msisdn, table.c.outcome == "language")
        .values(language=table.c.language, updated_at=context.now)
    )
    note_changes(connection, sa.select(table.c.msisdn).where(table.c.outcome == "language"))
    # Known numbers whose file now says since when their owner has held them. Asked first:
    # on a first import no row is of a known number, and the join found none in a second per
    # million rows.
    recorded_late = sa.and_(
        table.c.outcome.is_not(None),
        table.c.reject.is_(None),
        table.c.owner_since.is_not(None),
    )
    if connection.execute(sa.select(sa.literal(1)).where(recorded_late).limit(1)).first():
        connection.execute(
            sa.update(ownerships)
            .where(
                recorded_late,
                table.c.msisdn == ownerships.c.msisdn,
                ownerships.c.ended_at.is_(None),
                ownerships.c.owner_since.is_(None),
            )
            .values(owner_since=table.c.owner_since)
        )


def _create(connection: Connection, table: sa.Table, context: ImportContext) -> None:
    created = common.add_owned_numbers(
        connection,
        table,
        sa.and_(table.c.reject.is_(None), table.c.outcome.is_(None)),
        now=context.now,
        today=context.today,
        actor=context.actor,
        cause=OwnershipStart.IMPORT,
    )
    record_events(
        connection,
        created,
        sa.true(),
        now=context.now,
        actor=context.actor,
        event_type=AuditEvent.OWNERSHIP_STARTED,
        msisdn=created.c.msisdn,
        owner_id=created.c.owner_id,
        validity_end_after=created.c.validity_end,
        reason="imported from the subscriber file",
    )


def _extend(connection: Connection, table: sa.Table, context: ImportContext) -> None:
    extended = sa.and_(table.c.outcome == "extended", table.c.msisdn == numbers.c.msisdn)
    record_events(
        connection,
        table.join(numbers, numbers.c.msisdn == table.c.msisdn),
        table.c.outcome == "extended",
        now=context.now,
        actor=context.actor,
        event_type=AuditEvent.VALIDITY_EXTENDED,
        msisdn=table.c.msisdn,
        owner_id=numbers.c.owner_id,
        cycle=numbers.c.cycle,
        validity_end_before=numbers.c.validity_end,
        validity_end_after=table.c.validity_end,
        reason="moved forward by the subscriber file",
    )
    end_cycles(
        connection,
        extended,
        reason=CycleEnd.VALIDITY_EXTENDED,
        now=context.now,
        changes={"validity_end": table.c.validity_end, "language": table.c.language},
    )


@retried
def import_subscribers(
    database: Database,
    path: Path,
    settings: Settings,
    clock: Clock,
    *,
    actor: str,
    rejects_path: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import a subscriber file; see the module docstring."""
    return run_import(
        database,
        path,
        csv_format=SUBSCRIBERS,
        staging_table=subscriber_staging,
        key_column="msisdn",
        content_columns=("owner_id", "language", "validity_end", "owner_since"),
        parser=_Parser,
        unmarked_outcome="created",
        merge=_merge,
        settings=settings,
        clock=clock,
        actor=actor,
        rejects_path=rejects_path,
        on_progress=on_progress,
    )
