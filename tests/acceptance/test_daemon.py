"""The daemon in a subprocess: scheduled runs, catch-up, two daemons, clean stops, metrics."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from jobs.vocabulary import RunOutcome
from tests.support.cli import environment, recycler, start, wait_until
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")


def today() -> date:
    return datetime.now(ZONE).date()


def schedule_in(seconds: float) -> str:
    """A six-field crontab line that fires once, `seconds` from now, today."""
    moment = datetime.now(ZONE) + timedelta(seconds=seconds)
    return f"{moment.second} {moment.minute} {moment.hour} * * *"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def a_small_base(world: World) -> None:
    """A few numbers that get warnings today, and a fresh feed."""
    for days in (76, 83, 89):
        world.add_number(today() - timedelta(days=days))
    world.fresh_feed(today())


def daemon_environment(world: World, outbox: Path, **settings: str) -> dict[str, str]:
    chosen = {
        "send_window": "00:00-24:00",
        "send_poll_seconds": "1",
        "console_outbox_path": str(outbox),
        **settings,
    }
    return environment(world.url, **chosen)


def real_runs(world: World) -> list[sa.Row[tuple[object, ...]]]:
    return [record for record in world.run_records() if record.actor != "test"]


class TestScheduledRun:
    """The daemon runs the job on its schedule, sends, serves metrics, stops on SIGTERM."""

    def test_runs_once_sends_and_stops(self, world: World, tmp_path: Path) -> None:
        """One run at the scheduled second, warnings in the console outbox, exit 0."""
        a_small_base(world)
        # Yesterday's run happened: no catch-up, the schedule decides.
        world.record_run(today() - timedelta(days=1), datetime.now(UTC) - timedelta(minutes=5))
        outbox = tmp_path / "outbox.jsonl"
        port = free_port()
        env = daemon_environment(world, outbox, run_schedule=schedule_in(4), metrics_port=str(port))
        daemon = start("daemon", env=env)
        try:
            wait_until(lambda: len(real_runs(world)) == 1)
            wait_until(lambda: outbox.exists() and len(outbox.read_text().splitlines()) == 3)

            def scraped() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                    return str(response.read().decode())

            # The figures are refreshed once the sender has recorded what it sent.
            wait_until(lambda: 'recycler_outbox_warnings{state="sent"} 3.0' in scraped())
            assert 'recycler_last_run_outcome{outcome="succeeded"} 1.0' in scraped()
        finally:
            daemon.process.send_signal(signal.SIGTERM)
            stopped = daemon.finish(timeout=60)
        assert stopped.code == 0, stopped
        (run,) = real_runs(world)
        assert (run.as_of, run.outcome, run.catch_up) == (today(), RunOutcome.SUCCEEDED, False)
        assert world.warning_states() == {"sent": 3}
        events = [json.loads(line)["event"] for line in stopped.stderr.splitlines()]
        assert "daemon.started" in events
        assert "run.finished" in events
        assert events[-1] == "daemon.stopped", events


class TestCatchUp:
    """A daemon started after a missed night runs once, at once, and says it was a catch-up."""

    def test_missed_night(self, world: World, tmp_path: Path) -> None:
        """Last success two days ago, schedule at 01:30: one catch-up run for today."""
        a_small_base(world)
        world.record_run(today() - timedelta(days=2), datetime.now(UTC) - timedelta(days=2))
        env = daemon_environment(world, tmp_path / "outbox.jsonl", run_schedule="30 1 * * *")
        daemon = start("daemon", env=env)
        try:
            wait_until(lambda: len(real_runs(world)) == 1 and real_runs(world)[0].finished_at)
            time.sleep(1.5)  # room for a second run, which must not come
        finally:
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.finish(timeout=60).code == 0
        (run,) = real_runs(world)
        assert (run.as_of, run.outcome, run.catch_up) == (today(), RunOutcome.SUCCEEDED, True)


@pytest.mark.postgresql_only
class TestTwoDaemons:
    """Two daemons against one PostgreSQL: one run per date, whatever the timing."""

    @pytest.mark.parametrize("why", ["schedule", "catch-up"])
    def test_exactly_one_run(self, world: World, tmp_path: Path, why: str) -> None:
        """Both fire at the same second (or both catch up at start): one run for today."""
        a_small_base(world)
        if why == "schedule":
            world.record_run(today() - timedelta(days=1), datetime.now(UTC) - timedelta(minutes=5))
        env = daemon_environment(
            world,
            tmp_path / "outbox.jsonl",
            run_schedule=schedule_in(5),
            failpoints="run.warnings_queued=sleep:2",
        )
        daemons = [start("daemon", env=env), start("daemon", env=env)]
        try:
            wait_until(lambda: len(real_runs(world)) >= 1)
            time.sleep(8)  # past the schedule, past the first run's pause
        finally:
            for daemon in daemons:
                daemon.process.send_signal(signal.SIGTERM)
            results = [daemon.finish(timeout=60) for daemon in daemons]
        assert all(result.code == 0 for result in results), results
        done = [run for run in real_runs(world) if run.outcome == RunOutcome.SUCCEEDED]
        assert len(done) == 1, real_runs(world)
        assert done[0].as_of == today()
        skipped = "".join(result.stderr for result in results)
        assert "run.skipped" in skipped


class TestGracefulStop:
    """SIGTERM during a run: nothing kept, recorded interrupted, exit 0; a rerun does it all."""

    def test_daemon_stopped_mid_run(self, world: World, tmp_path: Path) -> None:
        """The catch-up run is paused inside its transaction when SIGTERM arrives."""
        a_small_base(world)
        before = world.snapshot()
        env = daemon_environment(
            world,
            tmp_path / "outbox.jsonl",
            run_schedule="30 1 * * *",
            send_window="03:00-03:01",
            failpoints="run.warnings_queued=sleep:3",
        )
        daemon = start("daemon", env=env)
        daemon.wait_for("failpoint run.warnings_queued")
        daemon.process.send_signal(signal.SIGTERM)
        stopped = daemon.finish(timeout=60)
        assert stopped.code == 0, stopped
        (run,) = real_runs(world)
        assert run.outcome == RunOutcome.INTERRUPTED
        assert world.snapshot() == before

    def test_manual_run_stopped_then_rerun(
        self, world: World, another_database: Callable[[], str]
    ) -> None:
        """`recycler run` on SIGTERM keeps nothing and exits 0; the rerun ends as an
        uninterrupted run would."""
        reference = World.create(another_database())
        for built in (world, reference):
            a_small_base(built)
        assert recycler("run", env=environment(reference.url)).code == 0
        running = start(
            "run",
            env={**environment(world.url), "RECYCLER_FAILPOINTS": "run.recycled=sleep:3"},
        )
        running.wait_for("failpoint run.recycled")
        running.process.send_signal(signal.SIGTERM)
        stopped = running.finish(timeout=60)
        assert stopped.code == 0, stopped
        assert "interrupted: stopped at run.recycled" in stopped.stderr
        assert [run.outcome for run in world.run_records()] == [RunOutcome.INTERRUPTED]
        assert world.warning_states() == {}
        assert recycler("run", env=environment(world.url)).code == 0
        comparable = {"numbers", "warnings", "pool", "ownerships", "events"}
        mine, theirs = world.snapshot(), reference.snapshot()
        assert {key: mine[key] for key in comparable} == {key: theirs[key] for key in comparable}
        reference.close()
