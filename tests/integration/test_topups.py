"""Top-ups: they move V only forward, start a new cycle, cancel the old cycle's unsent warnings,
re-arm warnings, and keep numbers from being recycled."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

from jobs.importing.loader import ImportSummary
from jobs.importing.topups import import_topups
from jobs.vocabulary import AuditEvent, WarningState
from tests.support.world import World, as_of_noon

D = date(2026, 11, 20)


def topup_file(tmp_path: Path, *rows: str, name: str = "topups.csv") -> Path:
    path = tmp_path / name
    path.write_text(
        "topup_id,msisdn,topped_up_at,validity_end,amount\n" + "".join(row + "\n" for row in rows),
        encoding="utf-8",
    )
    return path


def load(world: World, path: Path) -> ImportSummary:
    return import_topups(world.database, path, world.settings, world.clock, actor="test")


class TestTopupBetweenRuns:
    """A top-up imported between two runs."""

    def test_rearms_warnings_and_cancels_the_old_cycle(self, world: World, tmp_path: Path) -> None:
        """The pending stage-7 warning is cancelled; the new cycle is warned again at its own
        stages; nothing of the old cycle is ever sent."""
        msisdn = world.add_number(D - timedelta(days=83))  # E = D + 7
        world.fresh_feed(D)
        world.run(D)
        assert world.warnings_of(msisdn) == [(1, 7, WarningState.PENDING)]

        world.clock.moment = as_of_noon(D, world.settings) + timedelta(hours=2)
        new_end = D + timedelta(days=30)  # new E = D + 120
        summary = load(world, topup_file(tmp_path, f"T1,{msisdn},2026-11-20T13:00,{new_end},5"))
        assert (summary.applied, summary.rejected, summary.ignored) == (1, 0, 0)
        assert world.number(msisdn) == world.number(msisdn).__class__(
            owner_id="owner-1", validity_end=new_end, cycle=2, in_pool=False
        )
        assert world.warnings_of(msisdn) == [(1, 7, WarningState.CANCELLED)]
        assert AuditEvent.TOPUP_APPLIED in world.events_of(msisdn)

        next_day = D + timedelta(days=1)
        world.fresh_feed(next_day)
        assert world.run(next_day).warnings_queued == {}
        rearmed = new_end + timedelta(days=90 - 30)  # new E - 30
        world.fresh_feed(rearmed)
        report = world.run(rearmed)
        assert report.warnings_queued == {30: 1}
        assert world.warnings_of(msisdn) == [
            (1, 7, WarningState.CANCELLED),
            (2, 30, WarningState.PENDING),
        ]

    def test_prevents_the_recycle(self, world: World, tmp_path: Path) -> None:
        """A number due for recycling on D stays with its owner after a top-up before the run."""
        msisdn = world.add_number(D - timedelta(days=93))  # E = D - 3
        world.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
        world.clock.moment = as_of_noon(D, world.settings) - timedelta(hours=6)
        load(world, topup_file(tmp_path, f"T9,{msisdn},2026-11-20T05:00:00+07:00,2026-12-20"))
        report = world.run(D, allow_mass_recycle=True)
        assert report.recycled == 0
        state = world.number(msisdn)
        assert (state.owner_id, state.in_pool, state.validity_end) == (
            "owner-1",
            False,
            date(2026, 12, 20),
        )

    def test_moves_validity_only_forward(self, world: World, tmp_path: Path) -> None:
        """An older validity end is stored as a top-up but leaves V and the cycle alone."""
        msisdn = world.add_number(date(2026, 12, 1))
        summary = load(world, topup_file(tmp_path, f"T1,{msisdn},2026-11-01T10:00,2026-11-15"))
        assert summary.applied == 1
        assert world.number(msisdn).validity_end == date(2026, 12, 1)
        assert world.number(msisdn).cycle == 1
        assert AuditEvent.TOPUP_APPLIED not in world.events_of(msisdn)

    def test_several_topups_of_one_number_in_one_file(self, world: World, tmp_path: Path) -> None:
        """The latest validity end wins and the cycle advances once."""
        msisdn = world.add_number(date(2026, 11, 1))
        load(
            world,
            topup_file(
                tmp_path,
                f"A,{msisdn},2026-11-02T10:00,2026-12-02",
                f"B,{msisdn},2026-11-03T10:00,2027-01-02",
                f"C,{msisdn},2026-11-04T10:00,2026-12-20",
            ),
        )
        state = world.number(msisdn)
        assert (state.validity_end, state.cycle) == (date(2027, 1, 2), 2)

    def test_reimported_topup_is_ignored(self, world: World, tmp_path: Path) -> None:
        """The same topup_id again is counted as ignored, not applied twice, not rejected."""
        msisdn = world.add_number(date(2026, 11, 1))
        path = topup_file(tmp_path, f"T1,{msisdn},2026-11-02T10:00,2026-12-02")
        load(world, path)
        again = load(world, path)
        assert (again.applied, again.ignored, again.rejected) == (0, 1, 0)
        assert world.number(msisdn).cycle == 2

    def test_topup_for_a_recycled_number_is_a_visible_reject(
        self, world: World, tmp_path: Path
    ) -> None:
        """A top-up made after the number went to the pool is refused with a reason that tells
        the operator what to do, never dropped silently."""
        msisdn = world.add_number(D - timedelta(days=93))
        world.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
        world.fresh_feed(D)
        world.run(D, allow_mass_recycle=True)
        assert world.number(msisdn).in_pool
        stamped = (world.clock.now() + timedelta(hours=1)).astimezone(world.settings.zone)
        world.clock.advance(timedelta(hours=2))
        made = stamped.strftime("%Y-%m-%dT%H:%M")
        summary = load(world, topup_file(tmp_path, f"LATE,{msisdn},{made},2026-12-19"))
        assert (summary.applied, summary.rejected) == (0, 1)
        assert summary.rejects_path is not None
        with Path(summary.rejects_path).open(encoding="utf-8") as handle:
            header, row = list(csv.reader(handle))
        assert header == [
            "line",
            "reason",
            "topup_id",
            "msisdn",
            "topped_up_at",
            "validity_end",
            "amount",
        ]
        assert row == [
            "2",
            "the number was recycled into the resale pool on 2026-11-20; a top-up cannot bring "
            "it back: if the subscriber paid in time, use `recycler reinstate`",
            "LATE",
            msisdn,
            made,
            "2026-12-19",
        ]

    def test_topup_stamped_before_the_recycle_gives_the_number_back(
        self, world: World, tmp_path: Path
    ) -> None:
        """The feed was late: a top-up made the day before the recycle, arriving after it,
        would have kept the number; it goes back to its owner with the top-up's validity,
        recorded as a reinstatement by the import."""
        msisdn = world.add_number(D - timedelta(days=93), owner_id="alice")
        world.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
        world.fresh_feed(D)
        world.run(D, allow_mass_recycle=True)
        assert world.number(msisdn).in_pool
        summary = load(world, topup_file(tmp_path, f"PAID,{msisdn},2026-11-19T10:00,2026-12-19"))
        assert (summary.applied, summary.rejected, summary.outcomes) == (
            1,
            0,
            {"reinstated": 1},
        )
        state = world.number(msisdn)
        assert (state.owner_id, state.in_pool, state.validity_end) == (
            "alice",
            False,
            date(2026, 12, 19),
        )
        assert world.events_of(msisdn)[-2:] == [
            AuditEvent.OWNERSHIP_REINSTATED,
            AuditEvent.TOPUP_APPLIED,
        ]

    def test_an_old_topup_that_would_not_have_saved_it_is_a_reject(
        self, world: World, tmp_path: Path
    ) -> None:
        """Stamped before the recycle, but its validity end was past grace on the night: the
        recycle was right, and the row is a reject."""
        msisdn = world.add_number(D - timedelta(days=93))
        world.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
        world.fresh_feed(D)
        world.run(D, allow_mass_recycle=True)
        summary = load(world, topup_file(tmp_path, f"OLD,{msisdn},2026-08-01T10:00,2026-08-15"))
        assert (summary.applied, summary.rejected) == (0, 1)
        assert world.number(msisdn).in_pool
