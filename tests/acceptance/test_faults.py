"""The database and the clocks misbehaving under real processes (issue 9), on PostgreSQL.

The server is made to look stopped, restarted or frozen through a TCP proxy in front of it
(tests/support/proxy.py), for the process under test only; a sender's clock is shifted with
libfaketime. What must hold: a missed night is retried until it completes and `status` says so
meanwhile; a run whose failure cannot be written counts as failed; SIGTERM stops a run or a
sender within seconds even when the database does not answer; leases follow the database's
clock, and a sender whose clock is off refuses to start.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
import sqlalchemy as sa

from jobs.database.engine import BASE_LOCK_KEY
from jobs.vocabulary import RunOutcome
from tests.support.cli import Command, Running, environment, recycler, start, wait_until
from tests.support.proxy import proxied
from tests.support.twilio_server import ACCOUNT_SID, AUTH_TOKEN, Faults, TwilioTestServer
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")

pytestmark = pytest.mark.postgresql_only


def today() -> date:
    return datetime.now(ZONE).date()


def schedule_in(seconds: float) -> str:
    """A six-field crontab line that fires once, `seconds` from now, today."""
    moment = datetime.now(ZONE) + timedelta(seconds=seconds)
    return f"{moment.second} {moment.minute} {moment.hour} * * *"


def a_small_base(world: World) -> None:
    for days in (76, 83, 89):
        world.add_number(today() - timedelta(days=days))
    world.fresh_feed(today())


def status(world: World, **settings: str) -> dict[str, object]:
    result = recycler("status", "--json", env=environment(world.url, **settings))
    checks = result.json()["checks"]
    assert isinstance(checks, dict)
    return checks


def stopped_within(running: Running, seconds: float) -> tuple[Command, float]:
    """SIGTERM, then how long the process took to end."""
    began = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    finished = running.finish(timeout=60)
    return finished, time.monotonic() - began


class TestMissedNight:
    """The schedule fires inside an outage: the daemon retries until the night is done."""

    def test_run_retried_after_the_outage_and_status_says_so(self, world: World) -> None:
        """Outage from before the scheduled second until well after: retried with backoff
        (logged each time), `status` unhealthy (check `schedule`) until it completes."""
        a_small_base(world)
        world.record_run(today() - timedelta(days=1), datetime.now(UTC) - timedelta(hours=23))
        # `status` judges by the same schedule as the daemon (with the default one, the test
        # passed or failed by the time of day).
        schedule = schedule_in(5)
        with proxied(world.url) as (proxy, through):
            env = environment(
                through,
                run_schedule=schedule,
                run_retry_seconds="2",
                send_window="00:00-24:00",
                send_poll_seconds="60",
                console_outbox_path="/dev/null",
            )
            daemon = start("daemon", env=env)
            try:
                daemon.wait_for('"daemon.started"')
                proxy.cut()
                daemon.wait_for('"run.retry_scheduled"', timeout=30)
                daemon.wait_for('"attempt": 2', timeout=30)
                checks = status(world, run_schedule=schedule, run_grace_minutes="0.01")
                assert checks["schedule"]["ok"] is False
                assert "has not completed" in checks["schedule"]["problem"]
                assert [record.outcome for record in world.run_records()] == [RunOutcome.SUCCEEDED]
                proxy.restore()
                wait_until(
                    lambda: any(
                        record.outcome == RunOutcome.SUCCEEDED and record.as_of == today()
                        for record in world.run_records()
                    ),
                    timeout=60,
                )
                done = status(world, run_schedule=schedule, run_grace_minutes="0.01")
                assert done["schedule"]["ok"] is True
            finally:
                finished, _ = stopped_within(daemon, 30)
            assert finished.code == 0, finished


class TestRunWhoseFailureCannotBeWritten:
    """The server goes away mid-run: the record says running, status says failed."""

    def test_status_is_unhealthy(self, world: World) -> None:
        """Exit 1 from the run; `status` (which can reach the server) names the dead run."""
        a_small_base(world)
        with proxied(world.url) as (proxy, through):
            env = environment(through)
            env["RECYCLER_FAILPOINTS"] = "run.warnings_queued=sleep:2"
            running = start("run", env=env)
            running.wait_for("failpoint run.warnings_queued")
            proxy.cut()
            finished = running.finish(timeout=60)
        assert finished.code == 1, finished
        assert "Traceback" not in finished.stderr
        assert [record.outcome for record in world.run_records()] == [RunOutcome.RUNNING]
        checks = status(world)
        assert checks["last_run"]["ok"] is False
        assert (
            "nothing holds the run lock: it died without a record"
            in (checks["last_run"]["problem"])
        )


class TestStopWhileFrozen:
    """SIGTERM while the database does not answer: the process ends within seconds."""

    def test_run(self, world: World) -> None:
        """A run frozen mid-statement: gone within the stop timeout, exit 1 (nothing kept)."""
        a_small_base(world)
        with proxied(world.url) as (proxy, through):
            env = environment(through, stop_timeout_seconds="5")
            env["RECYCLER_FAILPOINTS"] = "run.warnings_queued=sleep:1"
            running = start("run", env=env)
            running.wait_for("failpoint run.warnings_queued")
            proxy.freeze()
            time.sleep(1.5)
            finished, took = stopped_within(running, 30)
            proxy.thaw()
        assert took < 10, (took, finished)
        assert finished.code in (0, 1), finished
        assert "Traceback" not in finished.stderr
        assert world.snapshot()["warnings"] == []  # nothing of the run was kept

    def test_send(self, world: World, tmp_path: Path) -> None:
        """A sender whose database froze: gone within the stop timeout."""
        world.queue_warnings(200)
        with (
            TwilioTestServer(Faults(latency=0.02)) as server,
            proxied(world.url) as (
                proxy,
                through,
            ),
        ):
            env = environment(
                through,
                gateway="twilio",
                twilio_from="+15005550006",
                twilio_base_url=server.base_url,
                send_window="00:00-24:00",
                send_rate="20",
                stop_timeout_seconds="5",
            )
            env["TWILIO_ACCOUNT_SID"] = ACCOUNT_SID
            env["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
            running = start("send", env=env)
            wait_until(lambda: len(server.accepted) >= 10)
            proxy.freeze()
            time.sleep(1)
            finished, took = stopped_within(running, 30)
            proxy.thaw()
        assert took < 12, (took, finished)
        assert finished.code >= 0, finished


class TestTimeouts:
    """A command never waits without bound."""

    def test_safeguard_waits_for_the_base_then_says_busy(self, world: World) -> None:
        """Another job holds the base lock: `hold` gives up after the statement timeout with
        exit 4 and a sentence; nothing changed."""
        msisdn = world.add_number(today() + timedelta(days=30))
        url = sa.make_url(world.url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False)) as foreign:
            foreign.execute("SELECT pg_advisory_xact_lock(%s)", (BASE_LOCK_KEY,))
            began = time.monotonic()
            result = recycler(
                "hold",
                msisdn,
                "--reason",
                "owner called",
                env=environment(world.url, database_statement_timeout_seconds="2"),
            )
            waited = time.monotonic() - began
        assert result.code == 4, result
        assert "another job is changing the base" in result.stderr
        assert 1.5 < waited < 20
        assert world.events_of(msisdn) == []


@pytest.mark.needs_faketime
class TestClockSkew:
    """Leases follow the database's clock, never a sender's."""

    def _env(self, world: World, server: TwilioTestServer, **settings: str) -> dict[str, str]:
        env = environment(
            world.url,
            gateway="twilio",
            twilio_from="+15005550006",
            twilio_base_url=server.base_url,
            send_window="00:00-24:00",
            send_rate="0",
            send_concurrency="8",
            **settings,
        )
        env["TWILIO_ACCOUNT_SID"] = ACCOUNT_SID
        env["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
        return env

    def _shifted(self, seconds: int, env: dict[str, str]) -> Running:
        faketime = shutil.which("faketime")
        assert faketime is not None
        process = subprocess.Popen(
            [faketime, "-f", f"+{seconds}s", sys.executable, "-m", "jobs", "send", "--once"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Running(process)

    def test_a_sender_ahead_by_more_than_a_lease_sends_nothing_twice(self, world: World) -> None:
        """One sender 310 s ahead (lease 300 s), the skew check relaxed to let it start: every
        warning still goes out exactly once."""
        queued = world.queue_warnings(600)
        with TwilioTestServer(Faults(latency=0.02)) as server:
            env = self._env(world, server, max_clock_skew_seconds="3600")
            ahead = self._shifted(310, env)
            normal = start("send", "--once", env=env)
            results = [ahead.finish(timeout=120), normal.finish(timeout=120)]
            assert all(result.code == 0 for result in results), results
            counts = server.counts()
        assert sorted(to for to, _ in counts) == sorted(queued)
        assert max(counts.values()) == 1, "a warning was sent twice"

    def test_a_sender_whose_clock_is_off_refuses_to_start(self, world: World) -> None:
        """310 s ahead with the default limit (30 s): exit 1, a warning naming the skew, and
        nothing sent."""
        world.queue_warnings(20)
        with TwilioTestServer() as server:
            finished = self._shifted(310, self._env(world, server)).finish(timeout=60)
            assert server.requests == 0
        assert finished.code == 1, finished
        assert "clock is 31" in finished.stderr  # 310 s, give or take the test's own pace
        assert world.warning_states() == {"pending": 20}


class TestFullDisk:
    """The console gateway's file on a disk that fills mid-line (RLIMIT_FSIZE)."""

    def test_whole_lines_only_and_the_rest_blocked(self, world: World, tmp_path: Path) -> None:
        """Room for two and a half lines: two whole lines, no torn third, that warning
        blocked (the operator's side), exit 1, no traceback."""
        world.queue_warnings(5)
        outbox = tmp_path / "outbox.jsonl"
        env = environment(
            world.url, console_outbox_path=str(outbox), send_window="00:00-24:00", send_rate="0"
        )
        probe = recycler("send", "--once", "--limit", "1", env=env)
        assert probe.code == 0, probe
        line = outbox.read_bytes()
        limit = len(line) * 5 // 2

        def little_room() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        completed = subprocess.run(
            [sys.executable, "-m", "jobs", "send", "--once", "--json"],
            env={**env, "RECYCLER_SEND_CONCURRENCY": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=little_room,
            check=False,
        )
        assert completed.returncode == 1, completed
        assert "Traceback" not in completed.stderr
        text = outbox.read_text()
        assert text.endswith("\n")
        assert len(text.splitlines()) == 2
        states = world.warning_states()
        assert (states.get("sent"), states.get("blocked")) == (2, 1), states
        assert os.path.getsize(outbox) <= limit
