"""Revision 0003 re-classifies warnings that failed on the operator's side (issue 8).

A database written by the first version holds warnings `failed` for a wrong token (20003), a
closed port (`connection`) or a broken adapter (`unexpected`), all counted as notice. After the
upgrade those of a current cycle are `blocked` (sent again by the next `send`), those of an ended
cycle cancelled, each with an audit event; refusals about the number stay `failed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from jobs.database.engine import Database
from jobs.database.migrate import upgrade

NOW = datetime(2026, 11, 20, 5, tzinfo=UTC)
DAY = date(2026, 11, 20)


@pytest.fixture
def old_database(database_url: str) -> Iterator[Database]:
    """The test's database taken back to revision 0002, emptied and rebuilt there."""
    database = Database(database_url)
    with database.write(sqlite_foreign_keys=False) as connection:
        names = [
            "audit_events",
            "warnings",
            "holds",
            "resale_pool",
            "topups",
            "ownerships",
            "numbers",
            "imports",
            "runs",
            "alembic_version",
        ]
        for name in names:
            connection.exec_driver_sql(
                f"DROP TABLE IF EXISTS {name}" + (" CASCADE" if database.is_postgresql else "")
            )
        if database.is_postgresql:
            for function in (
                "recycler_owner_change",
                "recycler_ownership_history",
                "recycler_audit_append_only",
            ):
                connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
    upgrade(database, "0002")
    try:
        yield database
    finally:
        database.dispose()


def _add(connection: sa.Connection, msisdn: str, cycle: int, owner: str | None) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO numbers (msisdn, owner_id, language, validity_end, cycle, on_hold,"
            " updated_at) VALUES (:msisdn, :owner, :language, :validity_end, :cycle, false, :now)"
        ),
        {
            "msisdn": msisdn,
            "owner": owner,
            "language": "en" if owner else None,
            "validity_end": DAY if owner else None,
            "cycle": cycle,
            "now": NOW,
        },
    )


def _warning(connection: sa.Connection, msisdn: str, cycle: int, code: str) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO warnings (msisdn, cycle, stage, owner_id, language, grace_end, text,"
            " encoding, segments, state, queued_at, queued_on, attempts, next_attempt_at,"
            " error_code, final_at, final_on) VALUES (:msisdn, :cycle, 7, 'owner', 'en',"
            " :day, 'text', 'GSM-7', 1, 'failed', :now, :day, 1, :now, :code, :now, :day)"
        ),
        {"msisdn": msisdn, "cycle": cycle, "code": code, "now": NOW, "day": DAY},
    )


def test_operator_side_failures_are_no_longer_notice(old_database: Database) -> None:
    """20003, connection and unexpected become blocked (current cycle) or cancelled (ended
    cycle); 21211 and 30005 stay failed; every change has its audit event."""
    with old_database.write() as connection:
        if old_database.is_postgresql:
            # Old data, written as the first version left it; the ownership guard is not the
            # subject here.
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for msisdn, code in (
            ("+85512000001", "20003"),
            ("+85512000002", "connection"),
            ("+85512000003", "unexpected"),
            ("+85512000004", "21211"),
            ("+85512000005", "30005"),
        ):
            _add(connection, msisdn, 1, "owner")
            _warning(connection, msisdn, 1, code)
        _add(connection, "+85512000006", 2, "owner")  # topped up since: the cycle ended
        _warning(connection, "+85512000006", 1, "20003")
    assert upgrade(old_database, "0003") == ("0002", "0003")
    with old_database.read() as connection:
        states = dict(
            connection.execute(sa.text("SELECT msisdn, state FROM warnings ORDER BY msisdn")).all()
        )
        finals = connection.execute(
            sa.text("SELECT count(*) FROM warnings WHERE state = 'blocked' AND final_on IS NULL")
        ).scalar_one()
        events = connection.execute(
            sa.text("SELECT msisdn, event_type, actor FROM audit_events ORDER BY msisdn")
        ).all()
    assert states == {
        "+85512000001": "blocked",
        "+85512000002": "blocked",
        "+85512000003": "blocked",
        "+85512000004": "failed",
        "+85512000005": "failed",
        "+85512000006": "cancelled",
    }
    assert finals == 3
    assert [(msisdn, kind) for msisdn, kind, _ in events] == [
        ("+85512000001", "warning.reclassified"),
        ("+85512000002", "warning.reclassified"),
        ("+85512000003", "warning.reclassified"),
        ("+85512000006", "warning.reclassified"),
    ]
    assert {actor for _, _, actor in events} == {"migration:0003"}
