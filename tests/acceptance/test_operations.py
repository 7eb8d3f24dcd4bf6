"""What monitoring sees: `status` exit codes, the metrics textfile, and logs free of numbers and
secrets."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from jobs.database.schema import warnings
from tests.support.cli import environment, recycler
from tests.support.twilio_server import ACCOUNT_SID, AUTH_TOKEN, Faults, TwilioTestServer
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")


def today() -> date:
    return datetime.now(ZONE).date()


class TestStatusHealth:
    """`status` exits 0 when healthy and 1 otherwise; --json names the failing check."""

    def _status(self, world: World, **settings: str) -> tuple[int, dict[str, object]]:
        result = recycler("status", "--json", env=environment(world.url, **settings))
        return result.code, result.json()

    def test_healthy(self, world: World) -> None:
        """A run an hour ago, nothing waiting: exit 0, every check ok."""
        world.record_run(today(), datetime.now(UTC) - timedelta(hours=1))
        code, status = self._status(world)
        assert code == 0
        assert status["healthy"] is True
        assert status["checks"] == {
            "last_run": {"ok": True, "problem": None},
            "run_age": {"ok": True, "problem": None},
            "schedule": {"ok": True, "problem": None},
            "send_lag": {"ok": True, "problem": None},
            "gateway": {"ok": True, "problem": None},
            "send_failures": {"ok": True, "problem": None},
        }

    def test_last_run_failed(self, world: World) -> None:
        """The newest real run failed: exit 1, check last_run."""
        world.record_run(today(), datetime.now(UTC) - timedelta(hours=3))
        world.record_run(today(), datetime.now(UTC) - timedelta(hours=1), "failed")
        code, status = self._status(world)
        assert code == 1
        checks = status["checks"]
        assert isinstance(checks, dict)
        assert checks["last_run"]["ok"] is False
        assert "failed" in checks["last_run"]["problem"]
        assert checks["run_age"]["ok"] is True

    def test_stale_run(self, world: World) -> None:
        """The newest successful run is 30 hours old (limit 26): exit 1, check run_age."""
        world.record_run(today(), datetime.now(UTC) - timedelta(hours=30))
        code, status = self._status(world)
        assert code == 1
        checks = status["checks"]
        assert isinstance(checks, dict)
        assert checks["run_age"]["ok"] is False
        assert "more than 26 h ago" in checks["run_age"]["problem"]

    def test_send_lag(self, world: World) -> None:
        """A warning due two hours ago, inside sending hours: exit 1, check send_lag; outside
        sending hours the same wait is no lag."""
        world.record_run(today(), datetime.now(UTC) - timedelta(hours=1))
        world.queue_warnings(1)
        with world.database.write() as connection:
            connection.execute(
                sa.update(warnings).values(
                    next_attempt_at=datetime.now(UTC) - timedelta(hours=2),
                    queued_at=datetime.now(UTC) - timedelta(hours=2),
                )
            )
        code, status = self._status(world, send_window="00:00-24:00")
        assert code == 1
        checks = status["checks"]
        assert isinstance(checks, dict)
        assert checks["send_lag"]["ok"] is False
        assert "waited 120 min inside sending hours" in checks["send_lag"]["problem"]
        local_hour = datetime.now(ZONE).hour
        closed = f"{(local_hour + 2) % 24:02d}:00-{(local_hour + 2) % 24:02d}:30"
        code, status = self._status(world, send_window=closed)
        assert code == 0, status


class TestMetricsTextfile:
    """One-shot commands leave Prometheus figures where node_exporter collects them."""

    def test_run_writes_the_textfile(self, world: World, tmp_path: Path) -> None:
        """After a run: its outcome, counts and the outbox by state."""
        world.add_number(today() - timedelta(days=83))
        world.fresh_feed(today())
        textfile = tmp_path / "recycler.prom"
        result = recycler("run", env=environment(world.url, metrics_textfile=str(textfile)))
        assert result.code == 0, result
        text = textfile.read_text()
        assert 'recycler_last_run_outcome{outcome="succeeded"} 1.0' in text
        assert 'recycler_last_run_warnings_queued{stage="7"} 1.0' in text
        assert 'recycler_last_run_numbers{kind="recycled"} 0.0' in text
        assert 'recycler_outbox_warnings{state="pending"} 1.0' in text
        assert "recycler_last_successful_run_timestamp_seconds" in text


_FULL_NUMBER = re.compile(r"\+855\d{8,9}|(?<!\d)0\d{8,9}(?!\d)")


class TestLogs:
    """No log line carries a full phone number (by default) or a secret."""

    @pytest.mark.parametrize("log_format", ["json", "console"])
    def test_no_numbers_no_secrets(self, world: World, tmp_path: Path, log_format: str) -> None:
        """Seed, run, send through Twilio with failures, look: the logs name no number and no
        secret. With log_full_numbers on, the same flow does show numbers (the check works)."""
        database_password = "db-pass-9f8e7d6c"  # PostgreSQL here trusts any password
        url = sa.make_url(world.url)
        if url.get_backend_name() == "postgresql":
            url = url.set(password=database_password)
        with TwilioTestServer(Faults(failure_rate=0.5, seed=5)) as server:
            env = environment(
                url.render_as_string(hide_password=False),
                log_format=log_format,
                gateway="twilio",
                twilio_from="+15005550006",
                twilio_base_url=server.base_url,
                send_window="00:00-24:00",
                send_rate="0",
            )
            env["TWILIO_ACCOUNT_SID"] = ACCOUNT_SID
            env["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
            logs = ""
            for command in (
                ("seed", "--subscribers", "400"),
                ("run",),
                ("send", "--once"),
                ("run", "--date", (today() + timedelta(days=3)).isoformat()),
                ("status",),
            ):
                logs += recycler(*command, env=env).stderr
            assert "send.retry_later" in logs  # the failures were logged
            assert _FULL_NUMBER.search(logs) is None, _FULL_NUMBER.search(logs)
            assert AUTH_TOKEN not in logs
            assert database_password not in logs
            assert "+855*****" in logs or "+855******" in logs

            env["RECYCLER_LOG_FULL_NUMBERS"] = "true"
            world.queue_warnings(3)
            shown = recycler("send", "--once", env=env).stderr
            server.set_faults(Faults(failure_rate=1.0, mix={"500": 1.0}))
            world.queue_warnings(2)
            shown += recycler("send", "--once", env=env).stderr
            assert _FULL_NUMBER.search(shown) is not None
