"""The lifecycle's transitions in SQL, each written once (docs/rules.md), for every caller: the
nightly run, both imports, the seed and the safeguards.

Ending a cycle is the one transition they all make: a top-up or a longer validity in the
subscriber file, a recycle, a sale, a transfer, a reinstatement, a hold and its release each end
the number's current cycle. The cycle's unsent warnings are cancelled (they speak of a grace end
that no longer holds), and the cycle is counted up, so that the next warning belongs to the new
one. The cause is audited by the caller, which knows what it did (``topup.applied``,
``number.recycled``, ``hold.placed``...).

The numbers whose cycle ends are gathered first into a small table of their own, analysed, and
only then are the warnings touched: a statement that picked the warnings through the caller's
own join (a staging table, a subquery over it) could be planned as a loop over the warnings that
rescans the file for each one, whatever the statistics say (tests/integration/
test_query_plans.py pins this).

Every change to what the night decides by (owner, language, validity end, cycle, hold) is also
noted in ``number_changes``, for the next night (``note_changes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from jobs.database.functions import add_days, any_of
from jobs.database.schema import number_changes, numbers, runs, warnings
from jobs.rules import Rules
from jobs.vocabulary import OPEN_STATES, CycleEnd, WarningState

__all__ = ["analyse", "end_cycles", "grace_end_of", "note_changes", "work_table"]

_work_metadata = sa.MetaData()
ending_cycles = sa.Table(
    "ending_cycles",
    _work_metadata,
    sa.Column("msisdn", numbers.c.msisdn.type, primary_key=True),
    sa.Column("cycle", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


ending_warnings = sa.Table(
    "ending_warnings",
    _work_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def work_table(connection: Connection, table: sa.Table) -> sa.Table:
    """Create a temporary work table for this transaction, dropping one left by an earlier
    statement of the same transaction (or, on SQLite, by an earlier use of the connection)."""
    schema = "temp" if connection.dialect.name == "sqlite" else "pg_temp"
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{table.name}")
    table.create(connection)
    return table


def analyse(connection: Connection, table: sa.Table) -> None:
    """Give the planner the real size of a work table just filled (PostgreSQL never analyses
    temporary tables by itself; SQLite's planner does not need it)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {table.name}")


def end_cycles(
    connection: Connection,
    condition: ColumnElement[bool],
    *,
    reason: CycleEnd,
    now: datetime,
    changes: Mapping[str, Any] | None = None,
) -> int:
    """End the current cycle of every number the condition selects: cancel the cycle's unsent
    warnings (``cancel_reason`` = reason), count the cycle up, and apply ``changes`` to the
    number in the same update. The condition is over ``numbers`` and may join other tables, as
    an UPDATE ... FROM does (``changes`` may take their columns). Returns how many numbers."""
    work_table(connection, ending_cycles)
    connection.execute(
        ending_cycles.insert().from_select(
            ["msisdn", "cycle"],
            sa.select(numbers.c.msisdn, numbers.c.cycle).distinct().where(condition),
        )
    )
    analyse(connection, ending_cycles)
    _cancel_open_warnings(connection, reason)
    ended = connection.execute(
        sa.update(numbers)
        .where(numbers.c.msisdn == ending_cycles.c.msisdn, condition)
        .values(cycle=numbers.c.cycle + 1, updated_at=now, **(changes or {}))
    )
    note_changes(connection, sa.select(ending_cycles.c.msisdn))
    return ended.rowcount


def note_changes(connection: Connection, changed: sa.Select[tuple[str]]) -> None:
    """Note numbers whose owner, language, validity end, cycle or hold this transaction changed,
    for the next night, which examines them whatever their stage (``number_changes`` in the
    schema says why). Every statement that changes one of those columns of ``numbers`` calls
    this in the same transaction: a change left out here would be seen by the night only when
    the number next crosses a stage.

    Until a night has been committed the next night examines its whole window anyway, and
    nothing is noted: the first import of a base would write a row per number for nothing."""
    night_committed = connection.execute(
        sa.select(sa.literal(1)).where(runs.c.window_rules.is_not(None)).limit(1)
    ).first()
    if night_committed is not None:
        connection.execute(number_changes.insert().from_select(["msisdn"], changed))


def grace_end_of(validity_end: ColumnElement[date], rules: Rules) -> ColumnElement[date]:
    """``Rules.grace_end`` in SQL: E = V + grace_days, for a column of validity ends."""
    return add_days(validity_end, rules.grace_days)


def _cancel_open_warnings(connection: Connection, reason: CycleEnd) -> None:
    """Cancel the unsent warnings of the cycles in ``ending_cycles``.

    On PostgreSQL the warnings are found from the numbers, one index probe per number (a
    LATERAL subquery behind OFFSET 0, which the planner neither flattens into a join nor turns
    around), into a work table of their ids, and then updated by primary key. Joined in one
    UPDATE, a night that had just queued two million warnings, on statistics that said no
    warning was open, was planned as a loop over the warnings that rescanned every ending cycle
    for each one (seen at ten million numbers; tests/integration/test_query_plans.py). On
    SQLite one UPDATE reads the open warnings by their partial index (ix_warnings_open) and
    probes the small table for each.
    """
    # The states written out, not bound: SQLite uses a partial index only for a query whose
    # condition is the index's own, which a parameter cannot be; bound, it read every warning
    # ever queued (tests/integration/test_sqlite_plans.py). PostgreSQL matches either form.
    states: sa.BindParameter[list[str]] = sa.bindparam(
        "open_states", [state.value for state in OPEN_STATES], expanding=True, literal_execute=True
    )
    open_warning = sa.and_(
        warnings.c.msisdn == ending_cycles.c.msisdn,
        warnings.c.cycle == ending_cycles.c.cycle,
        warnings.c.state.in_(states),
    )
    cancelled = {
        "state": WarningState.CANCELLED,
        "cancel_reason": reason,
        "lease_expires_at": None,
    }
    if connection.dialect.name != "postgresql":
        connection.execute(sa.update(warnings).where(open_warning).values(**cancelled))
        return
    work_table(connection, ending_warnings)
    probe = (
        sa.select(warnings.c.id.label("id")).where(open_warning).offset(0).lateral("open_warning")
    )
    connection.execute(
        ending_warnings.insert().from_select(
            ["id"], sa.select(probe.c.id).select_from(ending_cycles.join(probe, sa.true()))
        )
    )
    # By primary key, from an array made once: an index scan whatever the statistics say of
    # either table (joined, a loop could rescan the work table for every warning).
    connection.execute(
        sa.update(warnings).where(any_of(warnings.c.id, ending_warnings.c.id)).values(**cancelled)
    )
