"""The embedded database's plans for the statements that touch years of history (PostgreSQL's
are pinned in test_query_plans.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from jobs.vocabulary import WarningState
from tests.support.world import World

pytestmark = pytest.mark.sqlite_only

D = date(2026, 11, 20)


def test_ending_a_cycle_reads_open_warnings_only(world: World) -> None:
    """A top-up cancels the unsent warnings of the cycle it ends by the index of open warnings;
    it must not read every warning ever queued (history grows for years). With the states as
    parameters SQLite could not use that partial index and scanned the whole table."""
    msisdn = world.add_number(D + timedelta(days=10))
    world.add_warning(msisdn, 30, state=WarningState.PENDING)
    for history in range(40):  # settled warnings of other numbers
        other = world.add_number(D + timedelta(days=40 + history))
        world.add_warning(other, 30, state=WarningState.SENT, final_on=D)
    cancels: list[tuple[str, Any]] = []

    def before(
        _connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.startswith("UPDATE warnings") and "cancel_reason" in statement:
            cancels.append((statement, parameters))

    event.listen(world.database.engine, "before_cursor_execute", before)
    try:
        moment = datetime.fromisoformat("2026-11-20T09:00:00+07:00")
        assert world.import_topup(msisdn, moment, D + timedelta(days=60)).applied == 1
    finally:
        event.remove(world.database.engine, "before_cursor_execute", before)
    assert world.warnings_of(msisdn) == [(1, 30, WarningState.CANCELLED)]
    assert cancels
    for statement, parameters in cancels:
        with world.database.read() as connection:
            plan = [
                str(row[3])
                for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
        reads = [step for step in plan if "warnings" in step]
        assert reads, plan
        assert all("ix_warnings_open" in step for step in reads), plan
