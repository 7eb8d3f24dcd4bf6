"""deploy/postgresql/roles.sql, applied to a real PostgreSQL: least privilege holds."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from jobs.checking.records import answer_and_record
from jobs.database.engine import Database
from jobs.database.migrate import upgrade
from jobs.safeguards.reassigned import answer_on
from jobs.sending.receipts import keep_receipt
from jobs.vocabulary import AuditEvent, Verdict
from notifier.receipts import twilio_receipt
from tests.support.world import World

ADDED_ON = date(2026, 11, 25)  # the world's clock: the numbers' records begin there
ROLES = Path(__file__).resolve().parents[2] / "deploy" / "postgresql" / "roles.sql"


def _apply_roles(url: sa.URL) -> None:
    # psql would run the file; psycopg runs it the same way, several statements at once.
    with psycopg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    ) as connection:
        connection.execute(ROLES.read_text().encode())


def _as(url: sa.URL, role: str) -> str:
    return url.set(username=role).render_as_string(hide_password=False)


@pytest.mark.postgresql_only
class TestLeastPrivilege:
    """Owner migrates, the job works but cannot rewrite the audit trail, the reader reads."""

    def test_roles(self, database_url: str) -> None:
        """Apply, migrate as owner, apply again, then try each role's rights."""
        url = sa.make_url(database_url)
        _apply_roles(url)
        owner = Database(_as(url, "recycler_owner"))
        upgrade(owner)
        owner.dispose()
        _apply_roles(url)  # again after the upgrade: grants on the new tables

        job = World.create(_as(url, "recycler_job"))
        try:
            day = date(2026, 11, 20)
            msisdn = job.add_number(day - timedelta(days=83))
            job.fresh_feed(day)
            report = job.run(day)
            assert report.warnings_queued == {7: 1}
            # The next night reads what changed since, and empties the list.
            changed = job.add_number(day - timedelta(days=83))
            assert job.run(day + timedelta(days=1)).warnings_queued == {7: 1}
            assert job.warnings_of(changed) == [(1, 7, "pending")]
            assert job.events_of(msisdn) == [AuditEvent.WARNING_QUEUED]
            # The job's role runs the four-eyes workflow, and cannot rewrite its evidence.
            assert job.transfer(msisdn, "bob").owner_id == "bob"
            with job.database.engine.connect() as connection:
                schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
                assert schema == "recycler"
                for statement in (
                    "UPDATE audit_events SET reason = 'rewritten'",
                    "DELETE FROM audit_events",
                    "TRUNCATE audit_events",
                    "DELETE FROM alembic_version",
                    "UPDATE transfer_requests SET requested_by = 'someone else'",
                    "DELETE FROM transfer_decisions",
                ):
                    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                        connection.exec_driver_sql(statement)
                    connection.rollback()
                # The job's role may write numbers, but not give one to someone by hand.
                with pytest.raises(sa.exc.IntegrityError, match="went from bob to mallory"):
                    connection.exec_driver_sql(
                        f"UPDATE numbers SET owner_id = 'mallory' WHERE msisdn = '{msisdn}'"
                    )
                connection.rollback()
        finally:
            job.close()

        reader = Database(_as(url, "recycler_reader"))
        try:
            with reader.engine.connect() as connection:
                count = connection.exec_driver_sql("SELECT count(*) FROM numbers").scalar()
                assert count == 2
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    connection.exec_driver_sql("UPDATE numbers SET on_hold = true")
        finally:
            reader.dispose()

        api = World.create(_as(url, "recycler_api"))
        try:
            with api.database.write() as connection:
                answer = answer_on(connection, api.settings, ADDED_ON, msisdn, ADDED_ON)
            assert answer.verdict is Verdict.SAME_OWNER
            # As the API records a check: each statement its own transaction.
            with api.database.each_statement() as connection:
                result = answer_and_record(
                    connection,
                    api.settings,
                    now=api.clock.now(),
                    client_id="bank",
                    msisdn=msisdn,
                    specified_date=ADDED_ON,
                    correlator="c-1",
                )
            assert (result.status, result.recycled) == (200, False)
            # As the API keeps a delivery receipt: an append, and nothing more.
            with api.database.write() as connection:
                assert keep_receipt(
                    connection,
                    gateway="twilio",
                    message_id="SM1",
                    receipt=twilio_receipt("delivered", None),
                    now=api.clock.now(),
                    today=ADDED_ON,
                )
            with api.database.engine.connect() as connection:
                for statement in (
                    "SELECT count(*) FROM warnings",
                    "SELECT count(*) FROM delivery_receipts",
                    "UPDATE warnings SET state = 'delivered'",
                    "UPDATE numbers SET on_hold = true",
                    "DELETE FROM api_checks",
                    "INSERT INTO api_clients (client_id, name, secret_hash, scopes, created_at, "
                    "created_by) VALUES ('x', 'x', 'x', 'x', now(), 'x')",
                ):
                    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                        connection.exec_driver_sql(statement)
                    connection.rollback()
        finally:
            api.close()
