"""The health checks of `recycler status` that issue 8 found wanting: a sender that stalled
near the end of sending hours, blocked warnings, and a day of refusals."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from jobs.database.locks import RUN_LOCK_KEY, run_lock
from jobs.database.schema import runs, warnings
from jobs.inspection import status_view
from jobs.vocabulary import RunOutcome, WarningState
from tests.support.world import World

D = date(2026, 11, 25)


def local(world: World, hour: int, minute: int = 0, day: date = D) -> datetime:
    """A local moment on day D, in UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=world.settings.zone)


def checks(world: World) -> dict[str, str | None]:
    view = status_view(world.database, world.settings, world.clock, world.settings.rules)
    return view.checks


class TestSendLagAcrossTheWindow:
    """Waiting counts inside sending hours, whatever time it is now."""

    def test_stalled_at_the_end_of_the_day(self, world: World) -> None:
        """Queued 18:08, still pending at 20:50 (window 08:00-20:00): 112 min, unhealthy; at
        23:00 still unhealthy; the next morning at 08:30, 142 min."""
        world.record_run(D, local(world, 1, 35).astimezone(UTC))
        world.queue_warnings(1)
        with world.database.write() as connection:
            connection.execute(
                sa.update(warnings).values(
                    next_attempt_at=local(world, 18, 8), queued_at=local(world, 18, 8)
                )
            )
        world.clock.moment = local(world, 20, 50).astimezone(UTC)
        assert checks(world)["send_lag"] == (
            "a due warning has waited 112 min inside sending hours, more than 60 min: is a "
            "sender running?"
        )
        world.clock.moment = local(world, 8, 30, D + timedelta(days=1)).astimezone(UTC)
        problem = checks(world)["send_lag"]
        assert problem is not None
        assert "waited 142 min" in problem

    def test_a_short_evening_wait_is_fine(self, world: World) -> None:
        """Queued 19:30, looked at 23:00: 30 min inside the window, healthy."""
        world.queue_warnings(1)
        with world.database.write() as connection:
            connection.execute(sa.update(warnings).values(next_attempt_at=local(world, 19, 30)))
        world.clock.moment = local(world, 23).astimezone(UTC)
        assert checks(world)["send_lag"] is None


class TestRefusals:
    """Blocked warnings and a day of refusals show."""

    def test_blocked_warnings_make_the_gateway_check_fail(self, world: World) -> None:
        """Three blocked by a wrong token: named with the cause."""
        world.queue_warnings(3)
        with world.database.write() as connection:
            connection.execute(
                sa.update(warnings).values(
                    state=WarningState.BLOCKED,
                    error_code="20003",
                    error_message="20003: Authenticate",
                )
            )
        problem = checks(world)["gateway"]
        assert problem is not None
        assert problem.startswith("3 warnings could not be sent for a reason on the operator's")
        assert "20003: Authenticate" in problem

    def test_eight_failed_and_none_sent(self, world: World) -> None:
        """All of the day's finished warnings refused: unhealthy; half of ten is not."""
        world.queue_warnings(10)
        now = world.clock.now()
        with world.database.write() as connection:
            ids = [row.id for row in connection.execute(sa.select(warnings.c.id))]
            connection.execute(
                sa.update(warnings)
                .where(warnings.c.id.in_(ids[:8]))
                .values(
                    state=WarningState.FAILED, error_code="21211", final_at=now, final_on=now.date()
                )
            )
        problem = checks(world)["send_failures"]
        assert problem == (
            "8 of the 8 warnings finished in the last 24 h were refused for their numbers, "
            "more than 50%"
        )
        with world.database.write() as connection:
            connection.execute(
                sa.update(warnings)
                .where(warnings.c.id.in_(ids[3:]))
                .values(state=WarningState.SENT, final_at=now, final_on=now.date())
            )
        assert checks(world)["send_failures"] is None


class TestRunsThatDiedUnrecorded:
    """A run whose failure could not be written stays `running` in its record; status must not
    take that for a run in progress (issue 9)."""

    def _running(self, world: World, pid: int, started: datetime) -> None:
        with world.database.write() as connection:
            connection.execute(
                runs.insert().values(
                    as_of=D,
                    dry_run=False,
                    started_at=started,
                    outcome=RunOutcome.RUNNING,
                    actor="test",
                    host=socket.gethostname(),
                    pid=pid,
                )
            )

    def test_dead_process_is_a_failure(self, world: World) -> None:
        """Recorded running, its process gone and the lock free: unhealthy, check last_run."""
        world.record_run(D - timedelta(days=1), world.clock.now() - timedelta(hours=20))
        self._running(world, dead_pid(), world.clock.now() - timedelta(minutes=5))
        problem = checks(world)["last_run"]
        assert problem is not None
        assert "nothing holds the run lock: it died without a record" in problem

    @pytest.mark.postgresql_only
    def test_a_run_in_another_database_does_not_keep_it_alive(self, world: World) -> None:
        """Staging and production on one PostgreSQL server: a run holding its lock in the
        other database says nothing about this one's dead run (advisory locks are per
        database, pg_locks lists the whole server's)."""
        world.record_run(D - timedelta(days=1), world.clock.now() - timedelta(hours=20))
        self._running(world, dead_pid(), world.clock.now() - timedelta(minutes=5))
        other = sa.create_engine(sa.make_url(world.url).set(database="postgres"))
        try:
            with other.connect() as holder:
                assert holder.execute(
                    sa.select(sa.func.pg_try_advisory_lock(RUN_LOCK_KEY))
                ).scalar()
                problem = checks(world)["last_run"]
                holder.execute(sa.select(sa.func.pg_advisory_unlock(RUN_LOCK_KEY)))
        finally:
            other.dispose()
        assert problem is not None
        assert "nothing holds the run lock: it died without a record" in problem

    def test_run_in_progress_is_fine_until_too_long(self, world: World) -> None:
        """The lock is held (this very process, on SQLite; the advisory lock on PostgreSQL):
        healthy for a while, unhealthy past max_run_minutes."""
        world.record_run(D - timedelta(days=1), world.clock.now() - timedelta(hours=20))
        with run_lock(world.database):
            self._running(world, os.getpid(), world.clock.now() - timedelta(minutes=5))
            assert checks(world)["last_run"] is None
            world.clock.advance(timedelta(hours=3))
            problem = checks(world)["last_run"]
            assert problem is not None
            assert "more than 120 min" in problem


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class TestOutbox:
    """The outbox of `status`: every message waiting, whatever night queued it, and what became
    of the newest night's warnings (not of a run that queued none)."""

    def test_waiting_from_every_night_final_states_of_the_newest(self, world: World) -> None:
        first = world.add_number(D - timedelta(days=62))  # stage 30 due on D
        world.fresh_feed(D)
        world.run(D)
        with world.database.write() as connection:  # the gateway took D's warning
            connection.execute(
                sa.update(warnings)
                .where(warnings.c.msisdn == first)
                .values(state=WarningState.SENT, final_at=world.clock.now(), final_on=D)
            )
        later = D + timedelta(days=1)
        world.add_number(later - timedelta(days=62))
        world.add_number(later - timedelta(days=62))
        world.fresh_feed(later)
        world.run(later)

        def outbox() -> dict[str, object]:
            view = status_view(world.database, world.settings, world.clock, world.settings.rules)
            return {key: view.outbox[key] for key in ("pending", "sent", "night")}

        assert outbox() == {"pending": 2, "sent": 0, "night": later.isoformat()}
        # A run for an earlier date, covered by the later one, queues nothing: the outbox
        # still speaks of the newest night that did.
        assert world.run(D).outcome == RunOutcome.COVERED
        assert outbox() == {"pending": 2, "sent": 0, "night": later.isoformat()}
        with world.database.write() as connection:
            connection.execute(
                sa.update(warnings)
                .where(warnings.c.state == WarningState.PENDING)
                .values(state=WarningState.SENT, final_at=world.clock.now(), final_on=later)
            )
        assert outbox() == {"pending": 0, "sent": 2, "night": later.isoformat()}
