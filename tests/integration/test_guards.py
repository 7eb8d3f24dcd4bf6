"""The two guards that withhold recycling, the refusal of future dates, and the run lock."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from jobs.errors import FutureDateError
from jobs.vocabulary import AuditEvent, Guard, RunOutcome, WarningState
from tests.support.world import World, as_of_noon

D = date(2026, 11, 20)


def due_for_recycling(world: World, count: int) -> list[str]:
    """Numbers past grace end with notice given: the run would recycle each of them."""
    built = []
    for _ in range(count):
        msisdn = world.add_number(D - timedelta(days=92))
        world.add_warning(msisdn, 7, final_on=D - timedelta(days=9))
        built.append(msisdn)
    return built


def healthy_base(world: World, count: int) -> None:
    """Numbers far from grace end: counted in the base, untouched by the run."""
    for _ in range(count):
        world.add_number(D + timedelta(days=45))


class TestStaleFeed:
    """Recycling waits for a fresh top-up feed; warnings do not."""

    def test_no_feed_ever_imported_is_stale(self, world: World) -> None:
        """With no top-up ever imported, nothing is recycled, warnings are still queued."""
        due = due_for_recycling(world, 1)
        warned = world.add_number(D - timedelta(days=83))  # E = D + 7
        healthy_base(world, 99)
        report = world.run(D)
        assert report.guards == [Guard.STALE_FEED]
        assert report.outcome == RunOutcome.WITHHELD
        assert (report.recycled, report.withheld) == (0, 1)
        assert report.warnings_queued == {7: 1}
        assert not world.number(due[0]).in_pool
        assert world.warnings_of(warned) == [(1, 7, WarningState.PENDING)]
        assert "no top-up was ever imported" in report.messages[0]
        assert world.run_records()[-1].guards == [Guard.STALE_FEED]

    @pytest.mark.parametrize(
        ("newest_topup", "stale"),
        [
            # The limit is 36 h before the end of D (2026-11-21 00:00 in Phnom Penh).
            (datetime.fromisoformat("2026-11-19T11:59:00+07:00"), True),
            (datetime.fromisoformat("2026-11-19T12:00:00+07:00"), False),
            (datetime.fromisoformat("2026-11-20T09:00:00+07:00"), False),
        ],
    )
    def test_age_of_the_newest_topup(
        self, world: World, newest_topup: datetime, stale: bool
    ) -> None:
        """The guard trips exactly when the newest top-up is older than max_feed_age_hours."""
        due = due_for_recycling(world, 1)
        healthy_base(world, 99)
        holder = world.add_number(D + timedelta(days=10))
        summary = world.import_topup(holder, newest_topup, D + timedelta(days=40))
        assert summary.applied == 1
        report = world.run(D)
        assert (Guard.STALE_FEED in report.guards) is stale
        assert world.number(due[0]).in_pool is not stale

    def test_withheld_is_not_deferred(self, world: World) -> None:
        """A withheld night records a deferral only for the numbers that wait for notice: a
        number with notice given waits for the guard, not for notice, and its record says so
        (the run's withheld count), never a `recycle.deferred` event."""
        due = due_for_recycling(world, 1)
        waiting = world.add_number(D - timedelta(days=92))  # past grace, never warned
        healthy_base(world, 98)
        report = world.run(D)
        assert report.guards == [Guard.STALE_FEED]
        assert (report.recycled, report.withheld, report.deferred) == (0, 1, 1)
        for msisdn in due:
            assert AuditEvent.RECYCLE_DEFERRED not in world.events_of(msisdn), msisdn
        assert world.events_of(waiting).count(AuditEvent.RECYCLE_DEFERRED) == 1

    def test_released_by_a_fresh_import(self, world: World) -> None:
        """Once a fresh feed arrives, a rerun of the same date recycles."""
        due = due_for_recycling(world, 1)
        healthy_base(world, 99)
        assert world.run(D).guards == [Guard.STALE_FEED]
        world.fresh_feed(D)
        rerun = world.run(D)
        assert (rerun.guards, rerun.recycled, rerun.outcome) == ([], 1, RunOutcome.SUCCEEDED)
        assert world.number(due[0]).in_pool


class TestMassRecycle:
    """A run that would recycle too large a share of the base recycles nothing."""

    def test_trips_above_the_fraction(self, world: World) -> None:
        """3 of 100 active or in-grace numbers is more than 2%: withheld, exit-worthy."""
        due = due_for_recycling(world, 3)
        healthy_base(world, 100)
        world.fresh_feed(D)
        report = world.run(D)
        assert report.guards == [Guard.MASS_RECYCLE]
        assert (report.recycled, report.withheld, report.outcome) == (0, 3, RunOutcome.WITHHELD)
        assert not any(world.number(msisdn).in_pool for msisdn in due)
        assert "3 numbers would be recycled" in report.messages[0]
        # The base is counted whole when the guard trips (it stops counting only when the
        # base is too large for the guard to trip).
        assert "of the 100 active or in-grace numbers" in report.messages[0]
        assert "--allow-mass-recycle" in report.messages[0]

    def test_at_the_fraction_is_allowed(self, world: World) -> None:
        """2 of 100 is not more than 2%: recycled."""
        due_for_recycling(world, 2)
        healthy_base(world, 100)
        world.fresh_feed(D)
        report = world.run(D)
        assert (report.guards, report.recycled) == ([], 2)

    def test_override(self, world: World) -> None:
        """--allow-mass-recycle releases the guard for that run only."""
        due_for_recycling(world, 3)
        healthy_base(world, 100)
        world.fresh_feed(D)
        report = world.run(D, allow_mass_recycle=True)
        assert (report.guards, report.recycled) == ([], 3)

    def test_both_guards_are_reported(self, world: World) -> None:
        """A stale feed and a mass recycle are both named."""
        due_for_recycling(world, 3)
        healthy_base(world, 10)
        report = world.run(D)
        assert report.guards == [Guard.STALE_FEED, Guard.MASS_RECYCLE]


class TestFutureDate:
    """A run for a date after today would recycle early: refused, nothing written."""

    def test_refused_without_a_trace(self, world: World) -> None:
        """No run record, no warning, no recycle."""
        due_for_recycling(world, 1)
        world.fresh_feed(D)
        world.clock.moment = as_of_noon(D, world.settings)
        before = world.snapshot()
        with pytest.raises(FutureDateError, match="after today"):
            world.run_at_clock(D + timedelta(days=1))
        assert world.snapshot() == before
        assert world.run_records() == []

    def test_today_late_at_night_is_not_the_future(self, world: World) -> None:
        """23:30 in Phnom Penh is still D there, though UTC says otherwise."""
        world.fresh_feed(D)
        world.clock.moment = datetime.fromisoformat("2026-11-20T23:30:00+07:00")
        assert world.run_at_clock(D).outcome == RunOutcome.SUCCEEDED

    def test_dry_run_may_look_ahead(self, world: World) -> None:
        """A dry run for a later date works and keeps nothing."""
        due_for_recycling(world, 1)
        world.fresh_feed(D + timedelta(days=5))
        world.clock.moment = as_of_noon(D, world.settings)
        before = world.snapshot()
        report = world.run_at_clock(D + timedelta(days=5), dry_run=True, allow_mass_recycle=True)
        assert report.recycled == 1
        assert world.snapshot() == before
