"""``recycler import topups FILE``: the top-up feed that keeps numbers with their owners.

A top-up moves the number's validity end V only forward; when it does, a new cycle starts and the
old cycle's unsent warnings are cancelled. A top-up id seen before is ignored. A top-up for a number
in the resale pool, or made before the current owner got the number, is refused with a reason an
operator can act on, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from jobs.clock import Clock, local_date, parse_moment
from jobs.database.audit import record_events
from jobs.database.engine import Database, retried
from jobs.database.functions import any_of
from jobs.database.schema import UtcDateTime, numbers, ownerships, resale_pool, topups
from jobs.fast_numbers import NumberReader
from jobs.importing import common
from jobs.importing.loader import ImportContext, ImportSummary, run_import
from jobs.importing.reader import CsvFormat, RawRow
from jobs.importing.staging import StagingTable, TopupRow, topup_staging
from jobs.phone import InvalidNumber
from jobs.settings import Settings
from jobs.transitions import analyse, end_cycles, grace_end_of, work_table
from jobs.vocabulary import AuditEvent, CycleEnd, OwnershipEnd, OwnershipStart, PoolLeave

__all__ = ["TOPUPS", "import_topups"]

TOPUPS = CsvFormat(
    "topups", "top-up", ("topup_id", "msisdn", "topped_up_at", "validity_end"), optional=("amount",)
)
_MAX_ID = 64
# Clocks disagree a little; a top-up stamped a few minutes ahead of ours is not from the future.
_CLOCK_TOLERANCE = timedelta(minutes=5)
# numeric(14, 2) holds less than this.
_LARGEST_AMOUNT = Decimal(10) ** 12


class _Parser:
    """Turns one raw row of a top-up file into a staging row."""

    def __init__(self, context: ImportContext) -> None:
        settings = context.settings
        self.number = NumberReader(settings.default_region, settings.regions)
        self.zone = settings.zone
        self.latest = context.now + _CLOCK_TOLERANCE
        self.validity_end = common.DayReader("validity_end")

    def __call__(self, row: RawRow) -> TopupRow:
        line, fields, raw, problem = row
        if problem is not None:
            return _refused(row, problem)
        topup_id, written, moment_text, validity_text, amount_text = fields
        if not topup_id:
            return _refused(row, "empty topup_id")
        if len(topup_id) > _MAX_ID:
            return _refused(row, f"topup_id longer than {_MAX_ID} characters")
        try:
            msisdn = self.number(written)
        except InvalidNumber as error:
            return _refused(row, f"bad msisdn: {error}")
        try:
            topped_up_at = parse_moment(moment_text, self.zone)
        except ValueError as error:
            return _refused(row, f"bad topped_up_at: {error}")
        if topped_up_at > self.latest:
            return _refused(row, f"topped_up_at {moment_text} is in the future")
        validity_end = self.validity_end(validity_text)
        if isinstance(validity_end, str):
            return _refused(row, validity_end)
        if validity_end < local_date(topped_up_at, self.zone):
            return _refused(row, "validity_end is before the day of the top-up")
        amount: Decimal | None = None
        if amount_text:
            try:
                amount = Decimal(amount_text)
            except InvalidOperation:
                return _refused(row, f"bad amount {amount_text!r}")
            if not amount.is_finite() or amount < 0 or abs(amount) >= _LARGEST_AMOUNT:
                return _refused(row, f"bad amount {amount_text!r}")
        return TopupRow(line, raw, topup_id, msisdn, topped_up_at, validity_end, amount, None)


def _refused(row: RawRow, reason: str) -> TopupRow:
    return TopupRow(row.line, row.raw, None, None, None, None, None, reason)


def _in_file(
    connection: Connection,
    key: sa.Column[Any],
    values: sa.Column[Any],
    where: ColumnElement[bool] | None = None,
) -> ColumnElement[bool]:
    """A large table's rows that the file names, read by ``key``'s index. A day's feed holds a
    few percent of the base; joined to the staging table alone, PostgreSQL read every number
    in six statements, every ownership in one and every top-up ever stored in three, so that a
    daily import cost what the base (and, on stale statistics, its years) hold: 260,000
    top-ups into 10,000,000 numbers took 37.8 s (tests/integration/test_query_plans.py::
    TestDailyTopupsReadTheFile). On PostgreSQL ``any_of``; SQLite's planner probes by key by
    itself, and this adds nothing there. ``where`` keeps the file's rows still in play (a
    file imported again has none: each statement would probe every number for nothing)."""
    if connection.dialect.name != "postgresql":
        return sa.true()
    return any_of(key, values, where)


def _merge(
    connection: Connection, staging: StagingTable, context: ImportContext, import_id: int
) -> dict[str, int]:
    table = staging.table
    good = sa.and_(table.c.reject.is_(None), table.c.outcome.is_(None))
    named_numbers = _in_file(connection, numbers.c.msisdn, table.c.msisdn, good)
    named_topups = _in_file(connection, topups.c.topup_id, table.c.topup_id, good)
    connection.execute(
        sa.update(table)
        .where(
            good,
            sa.exists().where(topups.c.topup_id == table.c.topup_id, named_topups).correlate(table),
        )
        .values(outcome="ignored")
    )
    connection.execute(
        sa.update(table)
        .where(
            good,
            ~sa.exists().where(numbers.c.msisdn == table.c.msisdn, named_numbers).correlate(table),
        )
        .values(reject="unknown number")
    )
    reinstated = _reinstate_late_payers(connection, table, good, context)
    connection.execute(
        sa.update(table)
        .where(
            good,
            table.c.msisdn == resale_pool.c.msisdn,
            resale_pool.c.left_at.is_(None),
            _in_file(connection, resale_pool.c.msisdn, table.c.msisdn, good),
        )
        .values(
            reject=sa.literal("the number was recycled into the resale pool on ")
            + sa.cast(resale_pool.c.entered_on, sa.String)
            + sa.literal(
                "; a top-up cannot bring it back: if the subscriber paid in time, "
                "use `recycler reinstate`"
            )
        )
    )
    connection.execute(
        sa.update(table)
        .where(
            good,
            table.c.msisdn == ownerships.c.msisdn,
            ownerships.c.ended_at.is_(None),
            _in_file(connection, ownerships.c.msisdn, table.c.msisdn, good),
            # Only a sale tells when the owner really got the number; an imported owner may
            # have had it for years before recycler heard of them.
            ownerships.c.start_cause == OwnershipStart.SALE,
            table.c.topped_up_at < ownerships.c.started_at,
        )
        .values(
            reject=sa.literal("made before the current owner got the number (")
            + sa.cast(ownerships.c.started_on, sa.String)
            + sa.literal(")")
        )
    )
    common.insert_topups(
        connection,
        table.join(numbers, numbers.c.msisdn == table.c.msisdn),
        table,
        sa.and_(good, named_numbers),
        import_id=import_id,
        moved_validity=table.c.validity_end > numbers.c.validity_end,
    )
    # The good rows keep no outcome of their own (rewriting every row of a large file costs as
    # much as the rest of the merge): what each did is in its stored top-up.
    stored = table.join(topups, topups.c.topup_id == table.c.topup_id).join(
        numbers, numbers.c.msisdn == table.c.msisdn
    )
    mine = sa.and_(good, topups.c.import_id == import_id, named_topups)
    # A top-up whose validity end is not later than the number's changes nothing but is kept,
    # counted and recorded for what it is.
    record_events(
        connection,
        stored,
        sa.and_(mine, topups.c.moved_validity.is_(sa.false())),
        now=context.now,
        actor=context.actor,
        event_type=AuditEvent.TOPUP_NOT_LATER,
        msisdn=table.c.msisdn,
        reason=sa.literal("top-up ")
        + table.c.topup_id
        + sa.literal(": its validity end is not later than the number's; nothing changed"),
        owner_id=numbers.c.owner_id,
        cycle=numbers.c.cycle,
        validity_end_before=numbers.c.validity_end,
        validity_end_after=table.c.validity_end,
    )
    _move_validity(connection, table, good, named_numbers, context)
    what = sa.case(
        (topups.c.moved_validity.is_(sa.false()), "not_later"),
        (topups.c.msisdn.in_(sa.select(reinstated.c.msisdn)), "reinstated"),
        else_="extended",
    )
    counted = connection.execute(
        sa.select(what, sa.func.count())
        .select_from(table.join(topups, topups.c.topup_id == table.c.topup_id))
        .where(mine)
        .group_by(what)
    )
    return {str(outcome): count for outcome, count in counted}


_late_metadata = sa.MetaData()
pool_topups = sa.Table(
    "staging_pool_topups",
    _late_metadata,
    sa.Column("msisdn", sa.String(16), nullable=False),
    sa.Column("pool_entry_id", sa.Integer, nullable=False),
    sa.Column("previous_ownership_id", sa.Integer, nullable=False),
    sa.Column("entered_on", sa.Date, nullable=False),
    sa.Column("topped_up_at", UtcDateTime, nullable=False),
    sa.Column("validity_end", sa.Date, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
late_payers = sa.Table(
    "staging_late_payers",
    _late_metadata,
    sa.Column("msisdn", sa.String(16), primary_key=True),
    sa.Column("pool_entry_id", sa.Integer, nullable=False),
    sa.Column("owner_id", sa.String(64), nullable=False),
    sa.Column("language", sa.String(2), nullable=False),
    sa.Column("validity_end", sa.Date, nullable=False),
    sa.Column("recycled_on", sa.Date, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def _reinstate_late_payers(
    connection: Connection, table: sa.Table, good: ColumnElement[bool], context: ImportContext
) -> sa.Table:
    """Give back the numbers a recycle took although this file holds a top-up stamped before
    that recycle, which would have kept them: the subscriber paid in time, the feed arrived
    late (or raced the run). Only numbers still in the pool; a number sold since is a reject
    for care, as before. Returns the table of the numbers given back."""
    # First the top-ups of this file for numbers in the pool now (usually none), each with its
    # pool entry; then, for those alone, the ownership each entry ended, looked up by its key.
    # Joined in one statement, the planner may start from the ended ownerships (all of them,
    # ever: a table whose statistics can say "none" on a young system) and rescan the file for
    # each; at ten million numbers that ran for minutes.
    work_table(connection, pool_topups)
    connection.execute(
        pool_topups.insert().from_select(
            [c.name for c in pool_topups.columns],
            sa.select(
                table.c.msisdn,
                resale_pool.c.id,
                resale_pool.c.previous_ownership_id,
                resale_pool.c.entered_on,
                table.c.topped_up_at,
                table.c.validity_end,
            ).where(
                good,
                table.c.msisdn == resale_pool.c.msisdn,
                resale_pool.c.left_at.is_(None),
                _in_file(connection, resale_pool.c.msisdn, table.c.msisdn, good),
            ),
        )
    )
    analyse(connection, pool_topups)

    def ended(column: sa.Column[Any]) -> ColumnElement[Any]:
        # A lookup by primary key for each candidate: the planner cannot turn it around.
        return (
            sa.select(column)
            .where(ownerships.c.id == pool_topups.c.previous_ownership_id)
            .scalar_subquery()
        )

    work_table(connection, late_payers)
    connection.execute(
        late_payers.insert().from_select(
            [c.name for c in late_payers.columns],
            sa.select(
                pool_topups.c.msisdn,
                pool_topups.c.pool_entry_id,
                ended(ownerships.c.owner_id),
                ended(ownerships.c.language),
                ended(ownerships.c.final_validity_end),
                pool_topups.c.entered_on,
            )
            .distinct()
            .where(
                ended(ownerships.c.end_cause) == OwnershipEnd.RECYCLE,
                pool_topups.c.topped_up_at < ended(ownerships.c.ended_at),
                # With this top-up's validity end the number was not past grace that night.
                grace_end_of(pool_topups.c.validity_end, context.settings.rules)
                >= pool_topups.c.entered_on,
            ),
        )
    )
    returned = sa.select(late_payers.c.msisdn)
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
                "reason",
            ],
            sa.select(
                late_payers.c.msisdn,
                late_payers.c.owner_id,
                late_payers.c.language,
                sa.literal(context.now, ownerships.c.started_at.type),
                sa.literal(context.today, sa.Date),
                sa.literal(OwnershipStart.REINSTATEMENT),
                sa.literal(context.actor),
                sa.literal(_LATE_PAYER_REASON),
            ),
        )
    )
    connection.execute(
        sa.update(resale_pool)
        .where(
            resale_pool.c.id.in_(sa.select(late_payers.c.pool_entry_id)),
            _in_file(connection, resale_pool.c.id, late_payers.c.pool_entry_id),
        )
        .values(
            left_at=context.now,
            left_on=context.today,
            left_cause=PoolLeave.REINSTATED,
            new_ownership_id=sa.select(ownerships.c.id)
            .where(ownerships.c.msisdn == resale_pool.c.msisdn, ownerships.c.ended_at.is_(None))
            .scalar_subquery(),
        )
    )
    end_cycles(
        connection,
        sa.and_(
            numbers.c.msisdn == late_payers.c.msisdn,
            _in_file(connection, numbers.c.msisdn, late_payers.c.msisdn),
        ),
        reason=CycleEnd.REINSTATED,
        now=context.now,
        changes={
            "owner_id": late_payers.c.owner_id,
            "language": late_payers.c.language,
            "validity_end": late_payers.c.validity_end,
            "recycled_by_run_id": None,
        },
    )
    record_events(
        connection,
        late_payers,
        late_payers.c.msisdn.in_(returned),
        now=context.now,
        actor=context.actor,
        event_type=AuditEvent.OWNERSHIP_REINSTATED,
        msisdn=late_payers.c.msisdn,
        reason=sa.literal(_LATE_PAYER_REASON + " (recycled on ")
        + sa.cast(late_payers.c.recycled_on, sa.String)
        + sa.literal(")"),
        owner_id=late_payers.c.owner_id,
        validity_end_after=late_payers.c.validity_end,
    )
    return late_payers


_LATE_PAYER_REASON = (
    "a top-up stamped before the recycle arrived after it: the subscriber paid in time"
)


def _move_validity(
    connection: Connection,
    table: sa.Table,
    good: ColumnElement[bool],
    named_numbers: ColumnElement[bool],
    context: ImportContext,
) -> None:
    newest = (
        sa.select(
            table.c.msisdn.label("msisdn"),
            sa.func.max(table.c.validity_end).label("validity_end"),
        )
        .where(good)
        .group_by(table.c.msisdn)
        .subquery("newest")
    )
    moves = sa.and_(
        newest.c.msisdn == numbers.c.msisdn,
        newest.c.validity_end > numbers.c.validity_end,
        numbers.c.owner_id.is_not(None),
        named_numbers,
    )
    record_events(
        connection,
        newest.join(numbers, numbers.c.msisdn == newest.c.msisdn),
        moves,
        now=context.now,
        actor=context.actor,
        event_type=AuditEvent.TOPUP_APPLIED,
        msisdn=numbers.c.msisdn,
        reason="a top-up moved the validity end forward",
        owner_id=numbers.c.owner_id,
        cycle=numbers.c.cycle,
        validity_end_before=numbers.c.validity_end,
        validity_end_after=newest.c.validity_end,
    )
    end_cycles(
        connection,
        moves,
        reason=CycleEnd.TOPPED_UP,
        now=context.now,
        changes={"validity_end": newest.c.validity_end},
    )


@retried
def import_topups(
    database: Database,
    path: Path,
    settings: Settings,
    clock: Clock,
    *,
    actor: str,
    rejects_path: Path | None = None,
    watermark: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import a top-up file; see the module docstring."""
    return run_import(
        database,
        path,
        csv_format=TOPUPS,
        staging_table=topup_staging,
        key_column="topup_id",
        content_columns=("msisdn", "topped_up_at", "validity_end", "amount"),
        parser=_Parser,
        merge=_merge,
        settings=settings,
        clock=clock,
        actor=actor,
        rejects_path=rejects_path,
        watermark=watermark,
        on_progress=on_progress,
    )
