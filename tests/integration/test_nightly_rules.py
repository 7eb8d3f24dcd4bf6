"""The nightly run's rules, number by number, on both databases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from jobs.clock import local_date
from jobs.sending.dispatcher import Dispatcher
from jobs.vocabulary import AuditEvent, RunOutcome, WarningState
from notifier.testing import InMemoryGateway
from tests.support.world import World

D = date(2026, 11, 20)
GRACE = 90


def validity_end_for(distance: int) -> date:
    """V such that D = E + distance (distance -31 is "E-31": 31 days before grace end)."""
    grace_end = D - timedelta(days=distance)
    return grace_end - timedelta(days=GRACE)


@dataclass(frozen=True)
class Earlier:
    """A warning an earlier night left: stage, state, and the day it became final."""

    stage: int
    state: str = "sent"
    final_days_before_d: int | None = None


@dataclass(frozen=True)
class Case:
    name: str
    distance: int  # D - E
    earlier: tuple[Earlier, ...] = ()
    held: bool = False
    # Expected: the warning stage queued on D (0 = final notice), "recycle", or None.
    queued: int | None = None
    recycled: bool = False
    deferred: bool = False
    extra: dict[str, int] = field(default_factory=dict)


CASES = [
    # No earlier warnings.
    Case("E-31 nothing yet", -31),
    Case("E-30 first stage", -30, queued=30),
    Case("E-29 first stage", -29, queued=30),
    Case("E-14", -14, queued=14),
    Case("E-8 still stage 14", -8, queued=14),
    Case("E-7", -7, queued=7),
    Case("E-1", -1, queued=1),
    Case("E, last day", 0, queued=1),
    Case("E+1 never warned: final notice", 1, queued=0, deferred=True),
    Case("E+5 never warned: final notice", 5, queued=0, deferred=True),
    # With earlier warnings.
    Case("E-29 stage 30 already sent", -29, earlier=(Earlier(30, final_days_before_d=1),)),
    Case("E-14 after stage 30", -14, earlier=(Earlier(30, final_days_before_d=16),), queued=14),
    Case("E-8 stage 14 already sent", -8, earlier=(Earlier(14, final_days_before_d=6),)),
    Case(
        "E-7 missed 14 is never sent late",
        -7,
        earlier=(Earlier(30, final_days_before_d=23),),
        queued=7,
    ),
    Case(
        "E-1 stage 7 still pending", -1, earlier=(Earlier(7, state=WarningState.PENDING),), queued=1
    ),
    Case("E stage 1 already sent", 0, earlier=(Earlier(1, final_days_before_d=1),)),
    Case(
        "E+1 warned 8 days before D: recycled",
        1,
        earlier=(Earlier(7, final_days_before_d=8),),
        recycled=True,
    ),
    Case(
        "E+1 warned exactly 7 days before D: recycled",
        1,
        earlier=(Earlier(7, final_days_before_d=7),),
        recycled=True,
    ),
    Case(
        "E+1 warned only 2 days before D: deferred, nothing more",
        1,
        earlier=(Earlier(1, final_days_before_d=2),),
        deferred=True,
    ),
    Case(
        "E+1 warning still waiting to be sent: deferred, nothing more",
        1,
        earlier=(Earlier(7, state=WarningState.PENDING),),
        deferred=True,
    ),
    Case(
        "E+1 warning failed for good 8 days before: recycled",
        1,
        earlier=(Earlier(7, state=WarningState.FAILED, final_days_before_d=8),),
        recycled=True,
    ),
    Case(
        "E+5 warned 6 days before D: deferred",
        5,
        earlier=(Earlier(1, final_days_before_d=6),),
        deferred=True,
    ),
    Case(
        "E+5 warned 12 days before D: recycled",
        5,
        earlier=(Earlier(7, final_days_before_d=12),),
        recycled=True,
    ),
    Case(
        "E+5 final notice sent 3 days ago: deferred",
        5,
        earlier=(Earlier(0, final_days_before_d=3),),
        deferred=True,
    ),
    # Held numbers: no warning, never recycled.
    Case("held at E-7", -7, held=True),
    Case("held at E+5 with notice", 5, earlier=(Earlier(7, final_days_before_d=12),), held=True),
]


def build(world: World) -> dict[str, str]:
    """One number per case; returns case name -> msisdn."""
    built = {}
    for case in CASES:
        msisdn = world.add_number(validity_end_for(case.distance), on_hold=case.held)
        for earlier in case.earlier:
            final_on = (
                D - timedelta(days=earlier.final_days_before_d)
                if earlier.final_days_before_d is not None
                else None
            )
            world.add_warning(msisdn, earlier.stage, state=earlier.state, final_on=final_on)
        built[case.name] = msisdn
    world.fresh_feed(D)
    return built


class TestOneNight:
    """Each number at each distance from its grace end gets exactly the expected action."""

    def test_every_case(self, world: World) -> None:
        """Stage queued, recycled or deferred, per number, and the run's counts agree."""
        built = build(world)
        before = {name: world.warnings_of(msisdn) for name, msisdn in built.items()}
        report = world.run(D, allow_mass_recycle=True)
        for case in CASES:
            msisdn = built[case.name]
            new = world.warnings_of(msisdn)[len(before[case.name]) :]
            expected_new = [] if case.queued is None else [(1, case.queued, "pending")]
            assert new == expected_new, case.name
            state = world.number(msisdn)
            assert state.in_pool is case.recycled, case.name
            assert (state.owner_id is None) is case.recycled, case.name
            deferrals = world.events_of(msisdn).count(AuditEvent.RECYCLE_DEFERRED)
            assert deferrals == int(case.deferred), case.name
        expected_queued: dict[int, int] = {}
        for case in CASES:
            if case.queued is not None:
                expected_queued[case.queued] = expected_queued.get(case.queued, 0) + 1
        assert report.warnings_queued == expected_queued
        assert report.recycled == sum(case.recycled for case in CASES)
        assert report.deferred == sum(case.deferred for case in CASES)
        assert report.on_hold == sum(case.held for case in CASES)
        assert report.guards == []
        assert report.outcome == RunOutcome.SUCCEEDED

    def test_recycled_number_leaves_its_owner_and_enters_the_pool(self, world: World) -> None:
        """A recycle ends the ownership, cancels unsent warnings, and records why."""
        msisdn = world.add_number(validity_end_for(3), owner_id="alice")
        world.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
        world.add_warning(msisdn, 1, state=WarningState.PENDING)
        world.fresh_feed(D)
        report = world.run(D, allow_mass_recycle=True)
        assert report.recycled == 1
        state = world.number(msisdn)
        assert state == type(state)(owner_id=None, validity_end=None, cycle=2, in_pool=True)
        assert world.warnings_of(msisdn) == [
            (1, 7, WarningState.SENT),
            (1, 1, WarningState.CANCELLED),
        ]
        assert world.events_of(msisdn)[-1] == AuditEvent.NUMBER_RECYCLED
        snapshot = world.snapshot()
        assert snapshot["ownerships"] == [(msisdn, "alice", "recycle", validity_end_for(3))]
        assert snapshot["pool"] == [(msisdn, D, D)]

    def test_quarantine_delays_availability(self, world: World) -> None:
        """A recycled number is available for sale quarantine_days after D."""
        quarantined = world.with_settings(quarantine_days=30)
        msisdn = quarantined.add_number(validity_end_for(2))
        quarantined.add_warning(msisdn, 7, final_on=D - timedelta(days=9))
        quarantined.fresh_feed(D)
        quarantined.run(D, allow_mass_recycle=True)
        assert quarantined.snapshot()["pool"] == [(msisdn, D, D + timedelta(days=30))]

    def test_other_stages_setting(self, world: World) -> None:
        """The stages come from warning_days: with 10,3 a number at E-5 gets stage 10."""
        custom = world.with_settings(warning_days=[10, 3])
        at_five = custom.add_number(validity_end_for(-5))
        at_three = custom.add_number(validity_end_for(-3))
        at_eleven = custom.add_number(validity_end_for(-11))
        custom.fresh_feed(D)
        report = custom.run(D)
        assert report.warnings_queued == {10: 1, 3: 1}
        assert custom.warnings_of(at_five) == [(1, 10, WarningState.PENDING)]
        assert custom.warnings_of(at_three) == [(1, 3, WarningState.PENDING)]
        assert custom.warnings_of(at_eleven) == []


class TestImportedBase:
    """The first nights of a base that arrives as a file, before any warning has gone out: no
    warning anywhere has given notice, which the night asks once instead of for each number."""

    def test_backlog_is_deferred_once_then_recycled_after_notice(self, world: World) -> None:
        past = [world.next_msisdn() for _ in range(3)]
        inside = world.next_msisdn()
        world.import_subscribers(
            [
                (msisdn, f"owner-{index}", "en", validity_end_for(5))
                for index, msisdn in enumerate(past)
            ]
            + [(inside, "owner-in", "km", validity_end_for(-7))]
        )
        world.fresh_feed(D)
        first = world.run(D)
        assert (first.recycled, first.deferred, first.withheld) == (0, 3, 0)
        assert first.warnings_queued == {0: 3, 7: 1}
        for msisdn in past:
            assert world.warnings_of(msisdn) == [(1, 0, "pending")]
            assert world.events_of(msisdn).count(AuditEvent.RECYCLE_DEFERRED) == 1

        # The next night, still nothing sent: deferred, but recorded once per cycle.
        next_day = D + timedelta(days=1)
        world.fresh_feed(next_day)
        assert (world.run(next_day).deferred, world.run_records()[-1].recycled) == (3, 0)
        for msisdn in past:
            assert world.events_of(msisdn).count(AuditEvent.RECYCLE_DEFERRED) == 1

        # The final notices go out; once they are as old as the minimum notice, recycled.
        sender = world.with_settings(send_window="00:00-24:00")
        dispatcher = Dispatcher(sender.database, sender.settings, InMemoryGateway(), sender.clock)
        assert dispatcher.drain().sent == 4
        sent_on = local_date(world.clock.now(), world.settings.zone)
        later = sent_on + timedelta(days=world.settings.min_notice_days)
        world.fresh_feed(later)
        report = world.run(later, allow_mass_recycle=True)
        # The one that was inside the window is past grace too now, warned as long ago.
        assert (report.recycled, report.deferred) == (4, 0)
        assert all(world.number(msisdn).in_pool for msisdn in [*past, inside])


class TestIdempotence:
    """Running a date again, or an earlier one, changes nothing the first run did."""

    def test_same_date_then_earlier_dates(self, world: World) -> None:
        """Second run of D and runs of D-1 and D-10 queue and recycle nothing more."""
        build(world)
        first = world.run(D, allow_mass_recycle=True)
        assert first.recycled > 0
        assert sum(first.warnings_queued.values()) > 0
        after_first = world.snapshot()
        for as_of in (D, D - timedelta(days=1), D - timedelta(days=10)):
            again = world.run(as_of, allow_mass_recycle=True)
            assert again.warnings_queued == {}, as_of
            assert again.recycled == 0, as_of
            snapshot = world.snapshot()
            # Audit events may only grow by nothing: same rows as after the first run.
            assert snapshot == after_first, as_of

    def test_dry_run_keeps_nothing_but_its_record(self, world: World) -> None:
        """A dry run reports what it would do, changes no data, and is recorded as dry."""
        build(world)
        before = world.snapshot()
        report = world.run(D, dry_run=True, allow_mass_recycle=True)
        assert report.recycled > 0
        assert sum(report.warnings_queued.values()) > 0
        assert world.snapshot() == before
        record = world.run_records()[-1]
        assert record.dry_run is True
        assert record.outcome == RunOutcome.SUCCEEDED
        assert record.recycled == report.recycled
        real = world.run(D, allow_mass_recycle=True)
        assert (real.warnings_queued, real.recycled, real.deferred) == (
            report.warnings_queued,
            report.recycled,
            report.deferred,
        )

    def test_every_run_is_recorded(self, world: World) -> None:
        """The run record holds date, outcome, counts, guards and times."""
        build(world)
        report = world.run(D, allow_mass_recycle=True)
        record = world.run_records()[-1]
        assert record.as_of == D
        assert record.outcome == RunOutcome.SUCCEEDED
        assert record.dry_run is False
        assert record.recycled == report.recycled
        assert record.deferred == report.deferred
        assert record.warnings_queued == {
            str(stage): count for stage, count in report.warnings_queued.items()
        }
        assert record.guards == []
        assert record.finished_at >= record.started_at
