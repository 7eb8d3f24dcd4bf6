"""The nightly run's statements: each works on a whole set of numbers in one SQL statement.

They all run in the one transaction the run opens, so that a run killed at any point leaves the
database as it was, and the next run does the whole night's work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from jobs.database.audit import events_from, record_events
from jobs.database.functions import any_of, insert_selected, named_select
from jobs.database.schema import (
    audit_events,
    imports,
    number_changes,
    numbers,
    ownerships,
    resale_pool,
    runs,
    topups,
    warnings,
)
from jobs.nightly.frames import framed_text, text_frames
from jobs.nightly.records import COMPLETED
from jobs.rules import FINAL_NOTICE_STAGE, Rules
from jobs.transitions import analyse, end_cycles, grace_end_of, work_table
from jobs.vocabulary import NOTICE_STATES, AuditEvent, CycleEnd, OwnershipEnd, WarningState

__all__ = [
    "BaseCounts",
    "RunScope",
    "any_notice_given",
    "count_base",
    "newest_feed",
    "queue_warnings",
    "recycle",
    "take_changes",
]


@dataclass(frozen=True)
class RunScope:
    """The fixed values every statement of one run shares."""

    run_id: int
    as_of: date
    now: datetime
    rules: Rules
    region: str
    today: date  # the real local date now, for the *_on columns of what happens now

    @property
    def actor(self) -> str:
        """How the run signs its audit events."""
        return f"run:{self.run_id}"

    @property
    def grace_cutoff(self) -> date:
        """Numbers whose validity end lies before this date are past grace end on D."""
        return self.rules.grace_cutoff(self.as_of)

    @property
    def notice_cutoff(self) -> date:
        """A warning final on or before this date gave the minimum notice for D."""
        return self.rules.notice_cutoff(self.as_of)

    @property
    def available_from(self) -> date:
        """When a number recycled on D may be sold."""
        return self.rules.available_from(self.as_of)


_owned = numbers.c.owner_id.is_not(None)
_not_held = numbers.c.on_hold.is_(sa.false())


def _past_grace(scope: RunScope) -> ColumnElement[bool]:
    return numbers.c.validity_end < scope.grace_cutoff


def _probe(select: sa.Select[Any], *tables: sa.Table) -> ColumnElement[Any]:
    """A question about one number's current cycle ("has it a warning of this stage?") asked
    as one index probe per number: a scalar subquery with LIMIT 1, which the planner can
    neither turn into a join nor answer by hashing the whole table. As EXISTS, it may become
    an anti join or a hashed subplan that reads every warning or audit event ever written, so
    that a night's cost grows with years of history (tests/benchmarks/history.py), or, with
    stale statistics, a nested loop comparing each number with all of them
    (tests/integration/test_query_plans.py)."""
    return select.limit(1).correlate(*(tables or (numbers,))).scalar_subquery()


def _found() -> ColumnElement[int]:
    """What a probe that only asks "is there one?" selects: a constant, so that PostgreSQL
    answers from the index alone (an index-only scan) without reading the table's row; at a
    million numbers the warning window's probe took 0.64 s reading the rows, 0.37 s without."""
    return sa.literal(1)


def _notice_warning(scope: RunScope) -> ColumnElement[Any]:
    """A warning of the number's cycle that gave the minimum notice for D (or NULL)."""
    return _probe(
        sa.select(warnings.c.id).where(
            warnings.c.msisdn == numbers.c.msisdn,
            warnings.c.cycle == numbers.c.cycle,
            warnings.c.state.in_(NOTICE_STATES),
            warnings.c.final_on <= scope.notice_cutoff,
        )
    )


def _notice_given(scope: RunScope) -> ColumnElement[bool]:
    return _notice_warning(scope).is_not(None)


def _warning_values(
    scope: RunScope, stage: ColumnElement[int], grace_end: ColumnElement[date]
) -> sa.Select[tuple[object, ...]]:
    text, encoding, parts = framed_text(numbers.c.msisdn, scope.region)
    return named_select(
        msisdn=numbers.c.msisdn,
        cycle=numbers.c.cycle,
        stage=stage,
        owner_id=numbers.c.owner_id,
        language=numbers.c.language,
        grace_end=grace_end,
        text=text,
        encoding=encoding,
        segments=parts,
        state=sa.literal(WarningState.PENDING.value),
        queued_at=sa.literal(scope.now, warnings.c.queued_at.type),
        queued_on=sa.literal(scope.as_of, sa.Date),
        queued_by_run_id=sa.literal(scope.run_id),
        attempts=sa.literal(0),
        next_attempt_at=sa.literal(scope.now, warnings.c.next_attempt_at.type),
    )


# Where the warnings a statement would queue are gathered before they are written. A statement
# that reads the table it fills is planned when that table is small (on a first night, empty),
# and every row it adds lengthens each later probe: quadratic. Choosing first, into this table,
# and writing second keeps each statement's cost linear in what it touches, whatever the
# planner's statistics say (tests/integration/test_query_plans.py pins it).
_queue_metadata = sa.MetaData()
run_queue = sa.Table(
    "run_queue",
    _queue_metadata,
    *(
        sa.Column(column.name, column.type)
        for column in warnings.columns
        if column.name
        in (
            "msisdn",
            "cycle",
            "stage",
            "owner_id",
            "language",
            "grace_end",
            "text",
            "encoding",
            "segments",
            "state",
            "queued_at",
            "queued_on",
            "queued_by_run_id",
            "attempts",
            "next_attempt_at",
        )
    ),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def prepare_queue(connection: Connection) -> None:
    """Create the run's temporary queue table in this transaction."""
    if connection.dialect.name == "sqlite":
        # SQLite keeps temporary tables for the life of the connection, which the pool reuses.
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.run_queue")
    run_queue.create(connection)


def _write_queue(connection: Connection, chosen: sa.Select[tuple[object, ...]]) -> None:
    """Gather the chosen warnings, then write them: two statements, neither of which reads the
    table it writes."""
    connection.execute(run_queue.delete())
    connection.execute(insert_selected(run_queue, chosen))
    names = [column.name for column in chosen.selected_columns]
    connection.execute(insert_selected(warnings, sa.select(*(run_queue.c[name] for name in names))))


def _numbers_set(name: str) -> sa.Table:
    """A temporary table of distinct numbers, for one run's transaction."""
    return sa.Table(
        name,
        _queue_metadata,
        sa.Column("msisdn", numbers.c.msisdn.type, primary_key=True),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


run_changed = _numbers_set("run_changed")


def take_changes(connection: Connection, scope: RunScope) -> list[date] | None:
    """Decide which part of the warning window this night examines, and take the numbers
    changed since the last night out of ``number_changes`` into the run's own table.

    Returns the validity ends whose due stage changed since the last night (the other part of
    what is examined is the changed numbers), or None for the whole window: when no night was
    committed before, or under other rules (grace, stages), or too long ago. The shortcut holds
    because of what the last night left: every owned, unheld number of its window has a warning
    of its cycle at its due stage or a more urgent one, and warnings are never deleted. So a
    number that did not change since and whose due stage did not change needs nothing; every
    change to what the decision reads notes the number (``note_changes``); and this night
    records its rules so that the next can rely on it in turn
    (tests/integration/test_window.py replays random histories both ways)."""
    last = connection.execute(
        sa.select(runs.c.as_of, runs.c.window_rules)
        .where(COMPLETED, runs.c.id != scope.run_id)
        .order_by(runs.c.id.desc())
        .limit(1)
    ).first()
    signature = scope.rules.window_signature
    crossed = (
        scope.rules.stage_changed_since(last.as_of, scope.as_of)
        if last is not None and last.window_rules == signature
        else None
    )
    if crossed is not None:
        work_table(connection, run_changed)
        connection.execute(
            run_changed.insert().from_select(
                ["msisdn"], sa.select(number_changes.c.msisdn).distinct()
            )
        )
        analyse(connection, run_changed)
    # Emptied whatever the window: what was noted before tonight is tonight's to examine. No
    # writer can add a row meanwhile: they all wait for the base lock this run holds.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"TRUNCATE {number_changes.name}")
    else:
        connection.execute(number_changes.delete())
    connection.execute(
        sa.update(runs).where(runs.c.id == scope.run_id).values(window_rules=signature)
    )
    return crossed


def queue_warnings(connection: Connection, scope: RunScope, crossed: list[date] | None) -> None:
    """Queue the due stage for every owned, unheld number inside the warning stages, unless its
    cycle already has that stage or a more urgent one: of the whole window when ``crossed`` is
    None, otherwise of the numbers whose validity end is in ``crossed`` and of those changed
    since the last night (``take_changes``)."""
    if crossed is None:
        _write_queue(connection, _window(scope, numbers, sa.true()))
        return
    # Two statements, each led by an index: the validity ends, and the changed numbers by key.
    # A number in both is queued by the first and found warned by the second.
    _write_queue(connection, _window(scope, numbers, numbers.c.validity_end.in_(crossed)))
    changed = run_changed.join(numbers, numbers.c.msisdn == run_changed.c.msisdn)
    _write_queue(connection, _window(scope, changed, sa.true()))


def _window(
    scope: RunScope, source: sa.FromClause, condition: ColumnElement[bool]
) -> sa.Select[tuple[object, ...]]:
    """The warnings due inside the window for the numbers of ``source`` that meet the
    condition."""
    window_end = scope.grace_cutoff + timedelta(days=scope.rules.earliest_stage)
    already_warned = _probe(
        sa.select(_found()).where(
            warnings.c.msisdn == numbers.c.msisdn,
            warnings.c.cycle == numbers.c.cycle,
            warnings.c.stage <= text_frames.c.stage,
        ),
        numbers,
        text_frames,
    ).is_not(None)
    return (
        _warning_values(scope, text_frames.c.stage, text_frames.c.grace_end)
        .select_from(
            source.join(
                text_frames,
                sa.and_(
                    text_frames.c.language == numbers.c.language,
                    text_frames.c.validity_end == numbers.c.validity_end,
                ),
            )
        )
        .where(
            _owned,
            _not_held,
            numbers.c.validity_end.between(scope.grace_cutoff, window_end),
            condition,
            ~already_warned,
        )
    )


def queue_final_notices(connection: Connection, scope: RunScope) -> None:
    """Queue a final notice for every number past grace end whose cycle has no warning at all."""
    any_warning = _probe(
        sa.select(_found()).where(
            warnings.c.msisdn == numbers.c.msisdn, warnings.c.cycle == numbers.c.cycle
        )
    ).is_not(None)
    chosen = (
        _warning_values(
            scope,
            text_frames.c.stage,
            grace_end_of(numbers.c.validity_end, scope.rules),
        )
        .select_from(
            numbers.join(
                text_frames,
                sa.and_(
                    text_frames.c.language == numbers.c.language,
                    text_frames.c.stage == FINAL_NOTICE_STAGE,
                ),
            )
        )
        .where(_owned, _not_held, _past_grace(scope), ~any_warning)
    )
    _write_queue(connection, chosen)


def audit_queued_warnings(connection: Connection, scope: RunScope) -> None:
    """One audit event per warning this run queued."""
    record_events(
        connection,
        warnings,
        warnings.c.queued_by_run_id == scope.run_id,
        now=scope.now,
        actor=scope.actor,
        event_type=AuditEvent.WARNING_QUEUED,
        msisdn=warnings.c.msisdn,
        run_id=scope.run_id,
        owner_id=warnings.c.owner_id,
        cycle=warnings.c.cycle,
        stage=warnings.c.stage,
        warning_id=warnings.c.id,
    )


@dataclass(frozen=True)
class BaseCounts:
    """The base as the run finds it, before it recycles."""

    on_hold: int
    past_grace: int  # owned, not held, past grace end
    notice_given: int  # of those, the ones the minimum-notice rule lets go
    active_or_in_grace: int


def any_notice_given(connection: Connection, scope: RunScope) -> bool:
    """Whether any warning at all gave the minimum notice for D. When none did (an imported base
    before its first warnings went out: its first nights), no number of the past-grace backlog
    can have notice, and the base's counts and the deferrals need not ask each of them (1.56
    million probes of the warnings each, at ten million numbers; CHANGELOG). One look at the
    warnings, which stops at the first one found; nothing the run writes is in such a state."""
    found = connection.execute(
        sa.select(_found())
        .where(warnings.c.state.in_(NOTICE_STATES), warnings.c.final_on <= scope.notice_cutoff)
        .limit(1)
    ).first()
    return found is not None


# The numbers a night recycles, chosen by ``count_base`` (whose count the guards judge) before
# anything is written: every statement of the recycle then reads this set, and each number is
# written once (marking the numbers first, then ending their cycles, wrote each twice).
run_recycled = _numbers_set("run_recycled")


def count_base(connection: Connection, scope: RunScope, *, notice_possible: bool) -> BaseCounts:
    """Count held numbers, numbers past grace (with and without notice) and the live base. The
    numbers due (past grace, with notice) are chosen here, into ``run_recycled``, for
    ``recycle``: it acts on this very set, counted and guarded."""
    past = sa.and_(_not_held, _past_grace(scope))
    # The whole base's counts ask no question per number, so PostgreSQL may split the scan
    # across parallel workers (0.6 s at ten million numbers); with the notice probes in the
    # same statement it was serial, and took 2-4 s.
    row = connection.execute(
        sa.select(
            sa.func.count().filter(numbers.c.on_hold.is_(sa.true())),
            sa.func.count().filter(past),
            sa.func.count().filter(numbers.c.validity_end >= scope.grace_cutoff),
        ).where(_owned)
    ).one()
    work_table(connection, run_recycled)
    notice_given = 0
    if notice_possible and row[1]:
        connection.execute(
            run_recycled.insert().from_select(
                ["msisdn"], sa.select(numbers.c.msisdn).where(_owned, past, _notice_given(scope))
            )
        )
        analyse(connection, run_recycled)
        # Counted, not taken from the insert's row count, which the driver may not report.
        notice_given = connection.execute(
            sa.select(sa.func.count()).select_from(run_recycled)
        ).scalar_one()
    return BaseCounts(
        on_hold=row[0], past_grace=row[1], notice_given=notice_given, active_or_in_grace=row[2]
    )


def newest_feed(connection: Connection) -> datetime | None:
    """The newest top-up, or the newest watermark an import declared, whichever is later."""
    newest_topup, newest_watermark = connection.execute(
        sa.select(
            sa.select(sa.func.max(topups.c.topped_up_at)).scalar_subquery(),
            sa.select(sa.func.max(imports.c.watermark)).scalar_subquery(),
        )
    ).one()
    moments = [moment for moment in (newest_topup, newest_watermark) if moment is not None]
    return max(moments) if moments else None


def _chosen(connection: Connection) -> ColumnElement[bool]:
    """The numbers of ``run_recycled``: on PostgreSQL by ``any_of`` (a version that joined the
    work table had the planner hash every ownership: 13 s and 217 s at ten million numbers);
    SQLite probes the numbers' key by itself."""
    if connection.dialect.name != "postgresql":
        return numbers.c.msisdn.in_(sa.select(run_recycled.c.msisdn))
    return any_of(numbers.c.msisdn, run_recycled.c.msisdn)


def recycle(connection: Connection, scope: RunScope, due: int) -> int:
    """Recycle the ``due`` numbers ``count_base`` chose: owned, unheld, past grace end, with
    the minimum notice given, as committed when the run took the base lock. No import can
    commit in between (it waits for the base lock), so a top-up committed before the run
    always wins; everything here works on the chosen set, inside the same transaction."""
    if due == 0:
        return 0
    marked = sa.and_(_chosen(connection), _owned)
    # Each number's open ownership ends, and records the validity end it ended with.
    end_ownerships = (
        sa.update(ownerships)
        .where(ownerships.c.ended_at.is_(None), ownerships.c.msisdn == numbers.c.msisdn, marked)
        .values(
            ended_at=scope.now,
            ended_on=scope.today,
            end_cause=OwnershipEnd.RECYCLE,
            ended_by=scope.actor,
            run_id=scope.run_id,
            final_validity_end=numbers.c.validity_end,
        )
    )
    if connection.dialect.name == "postgresql":
        # One statement: the pool entries and the events are written from the rows the
        # update returns, where three statements found the same numbers and ownerships three
        # times (62,000 numbers recycled in a steady night at ten million: 3.2-3.5 s for the
        # three, 2.6-2.7 s for the one). SQLite has no data-modifying WITH.
        ended = end_ownerships.returning(
            ownerships.c.msisdn,
            ownerships.c.id,
            numbers.c.owner_id,
            numbers.c.cycle,
            numbers.c.validity_end,
        ).cte("ended_ownerships")
        pooled = _pool_entries(scope, ended.c.msisdn, ended.c.id, ended, sa.true()).cte("pooled")
        connection.execute(_recycled_events(scope, ended, sa.true()).add_cte(pooled))
    else:
        connection.execute(end_ownerships)
        connection.execute(
            _pool_entries(
                scope,
                ownerships.c.msisdn,
                ownerships.c.id,
                ownerships.join(numbers, ownerships.c.msisdn == numbers.c.msisdn),
                sa.and_(
                    marked,
                    ownerships.c.run_id == scope.run_id,
                    ownerships.c.end_cause == OwnershipEnd.RECYCLE,
                ),
            )
        )
        connection.execute(_recycled_events(scope, numbers, marked))
    return end_cycles(
        connection,
        marked,
        reason=CycleEnd.RECYCLED,
        now=scope.now,
        changes={
            "owner_id": None,
            "language": None,
            "validity_end": None,
            "recycled_by_run_id": scope.run_id,
        },
    )


def _pool_entries(
    scope: RunScope,
    msisdn: ColumnElement[Any],
    ownership_id: ColumnElement[Any],
    source: sa.FromClause,
    condition: ColumnElement[bool],
) -> sa.Insert:
    """The recycled numbers' entries into the resale pool, one per ended ownership."""
    return insert_selected(
        resale_pool,
        named_select(
            msisdn=msisdn,
            previous_ownership_id=ownership_id,
            recycled_by_run_id=scope.run_id,
            entered_at=sa.literal(scope.now, resale_pool.c.entered_at.type),
            entered_on=sa.literal(scope.as_of, sa.Date),
            available_from=sa.literal(scope.available_from, sa.Date),
        )
        .select_from(source)
        .where(condition),
    )


def _recycled_events(
    scope: RunScope, source: sa.FromClause, condition: ColumnElement[bool]
) -> sa.Insert:
    """One ``number.recycled`` event per recycled number, from the source's columns named as
    the number's (its owner, cycle and validity end before the recycle)."""
    number = source.c
    return events_from(
        source,
        condition,
        now=scope.now,
        actor=scope.actor,
        event_type=AuditEvent.NUMBER_RECYCLED,
        msisdn=number.msisdn,
        reason=(
            f"grace ended before {scope.as_of.isoformat()}, and a warning of this cycle was "
            f"accepted by the gateway (or refused for the number itself) on or before "
            f"{scope.notice_cutoff.isoformat()}"
        ),
        run_id=scope.run_id,
        owner_id=number.owner_id,
        cycle=number.cycle,
        validity_end_before=number.validity_end,
    )


run_deferrals = sa.Table(
    "run_deferrals",
    _queue_metadata,
    sa.Column("msisdn", numbers.c.msisdn.type, primary_key=True),
    sa.Column("owner_id", numbers.c.owner_id.type),
    sa.Column("cycle", sa.Integer),
    sa.Column("validity_end", sa.Date),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def audit_deferrals(connection: Connection, scope: RunScope, *, any_due: bool) -> None:
    """Record, once per number and cycle, that its recycle waits for the minimum notice (the
    numbers are chosen first, then their events written: see ``run_queue``). A past-grace
    number waits when ``count_base`` did not find it due: the same question under the same
    lock, answered once (asked again here, it probed the warnings of every number of the
    backlog a second time). ``any_due``: whether it found any (if not, nothing is asked)."""
    # "Not deferred yet in this cycle": a probe of the partial index of deferral events.
    already = _probe(
        sa.select(_found()).where(
            audit_events.c.msisdn == numbers.c.msisdn,
            audit_events.c.event_type == AuditEvent.RECYCLE_DEFERRED,
            audit_events.c.cycle == numbers.c.cycle,
        )
    )
    # Not due tonight: a probe of the work table's key, whatever its size.
    due = _probe(sa.select(_found()).where(run_recycled.c.msisdn == numbers.c.msisdn))
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.run_deferrals")
    run_deferrals.create(connection)
    connection.execute(
        run_deferrals.insert().from_select(
            ["msisdn", "owner_id", "cycle", "validity_end"],
            sa.select(
                numbers.c.msisdn, numbers.c.owner_id, numbers.c.cycle, numbers.c.validity_end
            ).where(
                _owned,
                _not_held,
                _past_grace(scope),
                due.is_(None) if any_due else sa.true(),
                already.is_(None),
            ),
        )
    )
    reason = (
        f"no warning of this cycle gave notice (accepted by the gateway, or refused for the "
        f"number itself) at least {scope.rules.min_notice_days} days before "
        f"{scope.as_of.isoformat()}"
    )
    record_events(
        connection,
        run_deferrals,
        sa.true(),
        now=scope.now,
        actor=scope.actor,
        event_type=AuditEvent.RECYCLE_DEFERRED,
        msisdn=run_deferrals.c.msisdn,
        reason=reason,
        run_id=scope.run_id,
        owner_id=run_deferrals.c.owner_id,
        cycle=run_deferrals.c.cycle,
        validity_end_before=run_deferrals.c.validity_end,
    )


def newest_completed_run(connection: Connection, run_id: int) -> date | None:
    """The latest as-of date a real (not dry) run completed, apart from this run."""
    return connection.execute(
        sa.select(sa.func.max(runs.c.as_of)).where(COMPLETED, runs.c.id != run_id)
    ).scalar()


def warnings_queued_by_stage(connection: Connection, run_id: int) -> dict[int, int]:
    """How many warnings of each stage the run queued."""
    rows = connection.execute(
        sa.select(warnings.c.stage, sa.func.count())
        .where(warnings.c.queued_by_run_id == run_id)
        .group_by(warnings.c.stage)
    )
    return {stage: count for stage, count in rows}
