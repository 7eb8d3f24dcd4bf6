"""Bad input found by trying the product as a new operator would (issue 8): each is answered
with a sentence and the documented exit code, never a traceback, and loses nothing."""

from __future__ import annotations

import signal
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.vocabulary import RunOutcome
from tests.support.cli import environment, recycler, start
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")


def today() -> date:
    return datetime.now(ZONE).date()


class TestSettings:
    """Settings out of range or mistyped."""

    def test_sqlite_url_without_a_path_is_refused(self, tmp_path: Path) -> None:
        """`sqlite:///$DB` with DB unset would be an in-memory database: exit 2, nothing
        pretends to be saved."""
        env = environment("sqlite:///")
        path = tmp_path / "subscribers.csv"
        path.write_text("msisdn,owner_id,language,validity_end\n012345678,a,km,2026-12-01\n")
        result = recycler("import", "subscribers", str(path), env=env, cwd=tmp_path)
        assert result.code == 2, result
        assert "database_url" in result.stderr
        assert "names no file" in result.stderr

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("grace_days", "1000000", "setting grace_days: Input should be less than or equal"),
            ("lease_seconds", "99999999999999", "setting lease_seconds: Input should be less"),
            ("max_feed_age_hours", "inf", "setting max_feed_age_hours: Input should be a finite"),
            ("quarantine_days", "100000000", "setting quarantine_days: Input should be less"),
        ],
    )
    def test_out_of_range_is_exit_2(
        self, tmp_path: Path, name: str, value: str, message: str
    ) -> None:
        """Every setting has bounds: a sentence naming it, exit 2, no traceback."""
        env = environment(f"sqlite:///{tmp_path / 'r.sqlite3'}", **{name: value})
        result = recycler("status", env=env)
        assert result.code == 2, result
        assert message in result.stderr
        assert "Traceback" not in result.stderr

    def test_unknown_environment_variable_is_named(self, tmp_path: Path) -> None:
        """RECYCLER_GRACEDAYS is not RECYCLER_GRACE_DAYS: said, with the likely meaning."""
        env = environment(f"sqlite:///{tmp_path / 'r.sqlite3'}")
        env["RECYCLER_GRACEDAYS"] = "30"
        result = recycler("status", env=env)
        assert "RECYCLER_GRACEDAYS is not a setting of recycler" in result.stderr
        assert "did you mean RECYCLER_GRACE_DAYS?" in result.stderr


class TestDates:
    """Dates that do not exist, or lie outside any sensible range."""

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["--date", "2026-02-30"], "2026-02-30 is not a date: day is out of range for month"),
            (["--date", "26-02-03"], "'26-02-03' is not a date (YYYY-MM-DD)"),
            (["--date", "0001-01-01"], "is before 2000-01-01"),
            (["--dry-run", "--date", "9999-12-31"], "the date 9999-12-31 is after 2199-12-31"),
            (["--dry-run", "--date", "2199-12-31"], "more than 366 days ahead"),
        ],
    )
    def test_run_dates(self, world: World, arguments: list[str], message: str) -> None:
        """Refused with exit 2 before anything is recorded."""
        result = recycler("run", *arguments, env=environment(world.url))
        assert result.code == 2, result
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert world.run_records() == []

    def test_validity_ends_out_of_range_are_rejected_rows(
        self, world: World, tmp_path: Path
    ) -> None:
        """9999-12-31 and 0001-01-01 become rejects; the good row applies; `number` works."""
        path = tmp_path / "subscribers.csv"
        path.write_text(
            "msisdn,owner_id,language,validity_end\n"
            "012300001,a,km,9999-12-31\n"
            "012300002,b,km,0001-01-01\n"
            "012300003,c,km,2026-12-01\n"
        )
        result = recycler("import", "subscribers", str(path), "--json", env=environment(world.url))
        assert result.code == 3, result
        assert (result.json()["applied"], result.json()["rejected"]) == (1, 2)
        reasons = (tmp_path / "subscribers.csv.rejects.csv").read_text()
        assert "validity_end 9999-12-31 is after 2199-12-31" in reasons
        assert "validity_end 0001-01-01 is before 2000-01-01" in reasons
        assert recycler("number", "012300003", env=environment(world.url)).code == 0


class TestJson:
    """--json means JSON, errors included."""

    def test_error_under_json_is_json(self, world: World) -> None:
        """A refusal is one JSON object on standard output, with the exit code and message."""
        result = recycler("run", "--date", "2026-02-30", "--json", env=environment(world.url))
        assert result.code == 2
        assert result.json() == {
            "error": {
                "exit_code": 2,
                "message": "invalid value for --date: 2026-02-30 is not a date: day is out "
                "of range for month",
            }
        }

    def test_reassigned_export_answers_in_json(self, world: World, tmp_path: Path) -> None:
        """The export's summary under --json."""
        target = tmp_path / "export.csv"
        result = recycler(
            "reassigned",
            "export",
            "--month",
            "2026-10",
            "--csv",
            str(target),
            "--json",
            env=environment(world.url),
        )
        assert result.code == 0, result
        assert result.json() == {"month": "2026-10", "numbers": 0, "csv": str(target)}


class TestRuns:
    """A run for a date an earlier completed run already covered."""

    def test_covered_run_is_recorded_as_covered(self, world: World) -> None:
        """Outcome `covered`, exit 0, and status stays healthy."""
        world.fresh_feed(today())
        assert recycler("run", env=environment(world.url)).code == 0
        earlier = (today() - timedelta(days=3)).isoformat()
        result = recycler("run", "--date", earlier, "--json", env=environment(world.url))
        assert result.code == 0, result
        assert result.json()["outcome"] == RunOutcome.COVERED
        assert [row.outcome for row in world.run_records()] == [
            RunOutcome.SUCCEEDED,
            RunOutcome.COVERED,
        ]
        status = recycler("status", "--json", env=environment(world.url))
        assert status.json()["checks"]["last_run"]["ok"] is True


class TestSafeguardDates:
    """Safeguard commands agree on what a date in the past means."""

    def test_reinstate_with_a_past_validity_end_is_refused(self, world: World) -> None:
        """As `pool sell` does: a date already past would give the owner nothing."""
        msisdn = world.add_number(today() - timedelta(days=95))
        world.fresh_feed(today())
        with world.database.write() as connection:
            connection.exec_driver_sql(
                "INSERT INTO warnings (msisdn, cycle, stage, owner_id, language, grace_end, text,"
                " encoding, segments, state, queued_at, queued_on, attempts, next_attempt_at,"
                " final_at, final_on) VALUES "
                f"('{msisdn}', 1, 7, 'owner-1', 'en', '2026-01-01', 't', 'GSM-7', 1, 'sent',"
                " '2026-01-01 00:00:00', '2026-01-01', 1, '2026-01-01 00:00:00',"
                " '2026-01-01 00:00:00', '2026-01-01')"
            )
        assert recycler("run", "--allow-mass-recycle", env=environment(world.url)).code == 0
        assert world.number(msisdn).in_pool
        yesterday = (today() - timedelta(days=1)).isoformat()
        result = recycler(
            "reinstate",
            msisdn,
            "--reason",
            "paid in time",
            "--validity-end",
            yesterday,
            env=environment(world.url),
        )
        assert result.code == 2, result
        assert "is already past" in result.stderr
        assert world.number(msisdn).in_pool


class TestInterruptedImport:
    """Ctrl-C in the middle of an import."""

    @pytest.mark.sqlite_only
    def test_one_message_one_exit_code_nothing_applied(self, world: World, tmp_path: Path) -> None:
        """SIGINT while the file is read: `interrupted: nothing was applied`, exit 1, no
        traceback, no number added."""
        path = tmp_path / "subscribers.csv"
        with path.open("w") as handle:
            handle.write("msisdn,owner_id,language,validity_end\n")
            for index in range(200_000):
                handle.write(f"+85512{index:06d},owner-{index},km,2026-12-01\n")
        env = environment(world.url)
        env["RECYCLER_FAILPOINTS"] = "import.before_commit=sleep:30"
        running = start("import", "subscribers", str(path), env=env)
        running.wait_for("failpoint import.before_commit", timeout=120)
        running.process.send_signal(signal.SIGINT)
        finished = running.finish(timeout=60)
        assert finished.code == 1, finished
        assert finished.stderr.count("interrupted") == 1, finished.stderr
        assert "nothing was applied" in finished.stderr
        assert "Traceback" not in finished.stderr
        assert "Aborted" not in finished.stderr
        assert world.snapshot()["numbers"] == []


def test_sigterm_at_start_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM in the first moments of a command: exit 0 (stopped, nothing done), never -15."""
    env = environment(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    codes = []
    for delay in (0.05, 0.15, 0.3):
        running = start("status", env=env)
        time.sleep(delay)
        running.process.send_signal(signal.SIGTERM)
        codes.append(running.finish(timeout=30).code)
    assert all(code >= 0 for code in codes), codes
