"""Runs killed with SIGKILL, runs racing top-ups, and two runs at once, in real subprocesses."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.vocabulary import AuditEvent, RunOutcome
from tests.support.cli import environment, recycler, start
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")
SEED = ("seed", "--subscribers", "4000", "--random-seed", "7")


def today() -> date:
    return datetime.now(ZONE).date()


def seeded(url: str) -> World:
    """A database with the same synthetic base every time."""
    result = recycler(*SEED, env=environment(url))
    assert result.code == 0, result
    return World.create(url)


def uninterrupted_result(another_database: Callable[[], str]) -> dict[str, object]:
    """The state one clean run leaves on the seeded base."""
    reference = seeded(another_database())
    try:
        result = recycler("run", env=environment(reference.url))
        assert result.code == 0, result
        return reference.snapshot()
    finally:
        reference.close()


class TestKilledRun:
    """A run killed at any point, then run again, ends as one uninterrupted run."""

    @pytest.mark.parametrize(
        "point",
        [
            "run.started",
            "run.warnings_queued",
            "run.recycled",
            "run.before_commit",
            "run.committed",
        ],
    )
    def test_killed_at_a_failpoint(
        self, database_url: str, another_database: Callable[[], str], point: str
    ) -> None:
        """SIGKILL at each named point of the run; the rerun finishes the night's work."""
        expected = uninterrupted_result(another_database)
        victim = seeded(database_url)
        try:
            killed = recycler(
                "run", env={**environment(database_url), "RECYCLER_FAILPOINTS": f"{point}=kill"}
            )
            assert killed.code == -signal.SIGKILL, killed
            assert f"failpoint {point}: kill" in killed.stderr
            rerun = recycler("run", "--json", env=environment(database_url))
            assert rerun.code == 0, rerun
            assert victim.snapshot() == expected
            records = victim.run_records()
            if point == "run.committed":
                # The work and its record commit together: the killed run says what it did.
                assert [record.outcome for record in records] == [
                    RunOutcome.SUCCEEDED,
                    RunOutcome.SUCCEEDED,
                ]
                assert records[0].recycled > 0
                assert sum(records[0].warnings_queued.values()) > 0
                assert (rerun.json()["recycled"], rerun.json()["warnings_queued"]) == (0, {})
            else:
                assert [record.outcome for record in records] == [
                    RunOutcome.ABANDONED,
                    RunOutcome.SUCCEEDED,
                ]
        finally:
            victim.close()

    @pytest.mark.postgresql_only
    def test_killed_at_random_moments(
        self, database_url: str, another_database: Callable[[], str]
    ) -> None:
        """Killed after a random delay, three times in a row, then left to finish."""
        expected = uninterrupted_result(another_database)
        victim = seeded(database_url)
        rng = random.Random(20261125)
        try:
            for _ in range(3):
                running = start("run", env=environment(database_url))
                time.sleep(rng.uniform(0.3, 1.5))
                running.process.kill()
                running.finish()
            final = recycler("run", env=environment(database_url))
            assert final.code == 0, final
            assert victim.snapshot() == expected
        finally:
            victim.close()


@pytest.mark.postgresql_only
class TestTopupRacingTheRecycle:
    """Whichever commits first decides, and nothing is lost either way."""

    def _due_number(self, world: World) -> str:
        """A number the run would recycle today, in a base large enough to pass the guard."""
        msisdn = world.add_number(today() - timedelta(days=93), owner_id="alice")
        world.add_warning(msisdn, 7, final_on=today() - timedelta(days=10))
        for _ in range(60):
            world.add_number(today() + timedelta(days=40))
        world.fresh_feed(today())
        return msisdn

    def _topup_file(self, tmp_path: Path, msisdn: str) -> Path:
        moment = (datetime.now(ZONE) - timedelta(minutes=30)).isoformat(timespec="seconds")
        path = tmp_path / "topups.csv"
        path.write_text(
            "topup_id,msisdn,topped_up_at,validity_end\n"
            f"RACE-1,{msisdn},{moment},{today() + timedelta(days=30)}\n"
        )
        return path

    def test_topup_committed_while_the_run_recycles_keeps_the_number(
        self, world: World, tmp_path: Path
    ) -> None:
        """The import holds the number when the run reaches it; the run waits, re-checks V
        after the import commits, and leaves the number with its owner."""
        msisdn = self._due_number(world)
        importing = start(
            "import",
            "topups",
            str(self._topup_file(tmp_path, msisdn)),
            env={**environment(world.url), "RECYCLER_FAILPOINTS": "import.before_commit=sleep:3"},
        )
        importing.wait_for("failpoint import.before_commit")
        began = time.monotonic()
        run = recycler("run", "--json", env=environment(world.url))
        waited = time.monotonic() - began
        assert importing.finish().code == 0
        assert run.code == 0, run
        assert run.json()["recycled"] == 0
        assert waited > 1.5, "the run should have waited for the import's lock"
        state = world.number(msisdn)
        assert (state.owner_id, state.in_pool) == ("alice", False)
        assert state.validity_end == today() + timedelta(days=30)

    def test_topup_stamped_before_the_recycle_gives_the_number_back(
        self, world: World, tmp_path: Path
    ) -> None:
        """The run holds the base and recycles; the import waits, then finds the number in the
        pool with a top-up stamped before the recycle: the subscriber paid in time, so the
        number goes back to its owner with the top-up's validity end."""
        msisdn = self._due_number(world)
        running = start(
            "run",
            env={**environment(world.url), "RECYCLER_FAILPOINTS": "run.recycled=sleep:3"},
        )
        running.wait_for("failpoint run.recycled")
        imported = recycler(
            "import",
            "topups",
            str(self._topup_file(tmp_path, msisdn)),
            "--json",
            env=environment(world.url),
        )
        assert running.finish().code == 0
        assert imported.code == 0, imported
        assert imported.json()["outcomes"] == {"reinstated": 1}
        state = world.number(msisdn)
        assert (state.owner_id, state.in_pool) == ("alice", False)
        assert state.validity_end == today() + timedelta(days=30)
        assert world.events_of(msisdn)[-3:] == [
            AuditEvent.NUMBER_RECYCLED,
            AuditEvent.OWNERSHIP_REINSTATED,
            AuditEvent.TOPUP_APPLIED,
        ]

    def test_topup_stamped_after_the_recycle_is_a_visible_reject(
        self, world: World, tmp_path: Path
    ) -> None:
        """A top-up made after the number was recycled cannot bring it back: a reject that
        says what to do."""
        msisdn = self._due_number(world)
        assert recycler("run", env=environment(world.url)).code == 0
        assert world.number(msisdn).in_pool
        path = tmp_path / "topups.csv"
        moment = (datetime.now(ZONE) + timedelta(seconds=1)).isoformat(timespec="seconds")
        path.write_text(
            "topup_id,msisdn,topped_up_at,validity_end\n"
            f"LATE-1,{msisdn},{moment},{today() + timedelta(days=30)}\n"
        )
        time.sleep(1.5)
        imported = recycler("import", "topups", str(path), "--json", env=environment(world.url))
        assert imported.code == 3, imported
        rejects = (tmp_path / "topups.csv.rejects.csv").read_text()
        assert "the number was recycled into the resale pool" in rejects
        assert world.number(msisdn).in_pool


class TestOneRunAtATime:
    """A second run while one is in progress exits 4 and changes nothing."""

    def test_second_run_is_refused(self, world: World) -> None:
        """The message names the run in progress."""
        world.fresh_feed(today())
        first = start(
            "run", env={**environment(world.url), "RECYCLER_FAILPOINTS": "run.started=sleep:3"}
        )
        first.wait_for("failpoint run.started")
        second = recycler("run", env=environment(world.url))
        assert second.code == 4, second
        assert f"run 1 for {today().isoformat()} is in progress" in second.stderr
        assert first.finish().code == 0
        assert [record.outcome for record in world.run_records()] == [RunOutcome.SUCCEEDED]
