"""The real command line in a subprocess: outputs, exit codes, refusals."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.vocabulary import AuditEvent, Guard, RunOutcome, WarningState
from tests.support.cli import environment, recycler
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")


def today() -> date:
    return datetime.now(ZONE).date()


class TestDemo:
    """The README's first command, step by step, on an empty directory."""

    def test_seed_then_run_today(self, tmp_path: Path) -> None:
        """A new SQLite file is created, seeded, and the run shows a normal night."""
        env = environment()
        seeded = recycler("seed", "--subscribers", "3000", "--json", env=env, cwd=tmp_path)
        assert seeded.code == 0, seeded
        assert seeded.json()["created"] == 3000
        assert (tmp_path / "recycler.sqlite3").exists()
        run = recycler("run", "--json", env=env, cwd=tmp_path)
        assert run.code == 0, run
        summary = run.json()
        assert summary["as_of"] == today().isoformat()
        assert summary["dry_run"] is False
        assert summary["guards"] == []
        assert set(summary["warnings_queued"]) == {"30", "14", "7", "1", "0"}
        assert all(count > 0 for count in summary["warnings_queued"].values())
        assert summary["recycled"] > 0
        assert summary["deferred"] > 0
        assert summary["on_hold"] == 0
        again = recycler("run", env=env, cwd=tmp_path)
        assert again.code == 0, again
        assert "recycled" in again.stdout
        reseeded = recycler("seed", "--subscribers", "3000", "--json", env=env, cwd=tmp_path)
        assert reseeded.json()["already_present"] == 3000


class TestRunExitCodes:
    """0 done, 2 refused, 3 withheld."""

    def test_future_date_is_refused(self, world: World) -> None:
        """Exit 2, a sentence, and no run recorded."""
        tomorrow = today() + timedelta(days=1)
        result = recycler("run", "--date", tomorrow.isoformat(), env=environment(world.url))
        assert result.code == 2, result
        assert f"refusing to run for {tomorrow.isoformat()}: it is after today" in result.stderr
        assert "Traceback" not in result.stderr
        assert world.run_records() == []

    def test_dry_run_may_look_ahead(self, world: World) -> None:
        """--dry-run for tomorrow works."""
        tomorrow = today() + timedelta(days=1)
        result = recycler(
            "run",
            "--date",
            tomorrow.isoformat(),
            "--dry-run",
            "--json",
            env=environment(world.url),
        )
        assert result.code == 3, result  # no feed: the stale guard speaks, even in a dry run
        assert result.json()["dry_run"] is True

    def test_stale_feed_withholds_with_exit_3(self, world: World) -> None:
        """Warnings are queued, recycling is withheld, the reason is printed."""
        world.add_number(today() - timedelta(days=83))
        result = recycler("run", "--json", env=environment(world.url))
        assert result.code == 3, result
        summary = result.json()
        assert summary["guards"] == [Guard.STALE_FEED]
        assert summary["warnings_queued"] == {"7": 1}
        assert "recycling withheld: the top-up feed is stale" in result.stderr

    def test_bad_date_argument(self, world: World) -> None:
        """A date that is not a date is a usage error (exit 2)."""
        result = recycler("run", "--date", "2026-13-45", env=environment(world.url))
        assert result.code == 2
        assert "Invalid value for '--date'" in result.stderr

    def test_invalid_setting(self, world: World) -> None:
        """A bad setting stops the command at start with its name."""
        result = recycler("run", env=environment(world.url, grace_days="-1"))
        assert result.code == 2
        assert "invalid settings: setting grace_days" in result.stderr


class TestImportExitCodes:
    """0 all applied, 3 some rows rejected, 2 file refused."""

    def test_three_outcomes(self, world: World, tmp_path: Path) -> None:
        """Good file, file with a bad row, file without a column."""
        env = environment(world.url)
        good = tmp_path / "good.csv"
        good.write_text("msisdn,owner_id,language,validity_end\n012345678,alice,km,2026-12-01\n")
        result = recycler("import", "subscribers", str(good), "--json", env=env)
        assert result.code == 0, result
        assert result.json()["applied"] == 1

        mixed = tmp_path / "mixed.csv"
        mixed.write_text(
            "msisdn,owner_id,language,validity_end\n017000001,bob,km,2026-12-01\nnope,c,km,x\n"
        )
        result = recycler("import", "subscribers", str(mixed), env=env)
        assert result.code == 3, result
        assert "2 rows read, 1 applied (created 1), 0 ignored (already imported), 1 rejected" in (
            result.stdout
        )
        assert (tmp_path / "mixed.csv.rejects.csv").exists()

        wrong = tmp_path / "wrong.csv"
        wrong.write_text("msisdn,owner\n012345678,alice\n")
        result = recycler("import", "subscribers", str(wrong), env=env)
        assert result.code == 2, result
        assert "missing column owner_id, language, validity_end" in result.stderr
        assert world.number("+85512345678").owner_id == "alice"

    def test_watermark_in_the_future_is_refused(self, world: World, tmp_path: Path) -> None:
        """A feed cannot be complete up to a moment that has not come."""
        feed = tmp_path / "feed.csv"
        feed.write_text("topup_id,msisdn,topped_up_at,validity_end\n")
        later = (datetime.now(ZONE) + timedelta(days=1)).isoformat()
        result = recycler(
            "import", "topups", str(feed), "--watermark", later, env=environment(world.url)
        )
        assert result.code == 2
        assert "is in the future" in result.stderr


class TestLooking:
    """status and number."""

    def test_number_errors(self, world: World) -> None:
        """Malformed and unknown numbers: exit 2 and a sentence, never a traceback."""
        env = environment(world.url)
        malformed = recycler("number", "12ab", env=env)
        assert malformed.code == 2
        assert "not a phone number: '12ab'" in malformed.stderr
        unknown = recycler("number", "012345678", env=env)
        assert unknown.code == 2
        assert "recycler knows no number +85512345678" in unknown.stderr
        assert "Traceback" not in malformed.stderr + unknown.stderr

    def test_number_view(self, world: World) -> None:
        """State, owner, dates and warnings of one number."""
        msisdn = world.add_number(today() - timedelta(days=83), owner_id="alice")
        world.fresh_feed(today())
        assert recycler("run", env=environment(world.url)).code == 0
        result = recycler("number", "0" + msisdn[4:], "--json", env=environment(world.url))
        assert result.code == 0, result
        view = result.json()
        assert view["msisdn"] == msisdn
        assert view["state"] == "in grace"
        assert view["owner_id"] == "alice"
        assert view["days_left"] == 7
        assert [(w["stage"], w["state"]) for w in view["warnings"]] == [(7, "pending")]
        assert [event["event_type"] for event in view["events"]] == [AuditEvent.WARNING_QUEUED]

    def test_status_health(self, world: World) -> None:
        """Unhealthy (1) before any run, healthy (0) after one."""
        env = environment(world.url)
        before = recycler("status", "--json", env=env)
        assert before.code == 1
        assert before.json()["problems"] == ["no nightly run has succeeded yet"]
        world.add_number(today() - timedelta(days=83))
        world.fresh_feed(today())
        assert recycler("run", env=env).code == 0
        after = recycler("status", "--json", env=env)
        assert after.code == 0, after
        status = after.json()
        assert status["outbox"]["pending"] == 1
        assert status["outbox"]["in_flight"] == 0
        assert status["outbox"]["oldest_pending_minutes"] >= 0
        assert status["numbers"]["in_grace"] == 1
        assert status["runs"][0]["outcome"] == RunOutcome.SUCCEEDED


class TestSendOnce:
    """`send --once` through the console gateway into a file."""

    def test_messages_land_in_the_outbox_file(self, world: World, tmp_path: Path) -> None:
        """One JSON line per SMS; the outbox records them as sent."""
        msisdn = world.add_number(today() - timedelta(days=83), language="km")
        world.fresh_feed(today())
        outbox = tmp_path / "outbox.jsonl"
        env = environment(world.url, console_outbox_path=str(outbox), send_window="00:00-24:00")
        assert recycler("run", env=env).code == 0
        result = recycler("send", "--once", "--json", env=env)
        assert result.code == 0, result
        summary = json.loads(result.stdout)
        assert summary.pop("database_seconds") >= 0
        assert summary == {
            "sent": 1,
            "retried": 0,
            "failed": 0,
            "blocked": 0,
            "cancelled": 0,
            "released": 0,
            "receipts": 0,
            "outside_window": False,
            "gateway_problem": None,
        }
        (line,) = outbox.read_text(encoding="utf-8").splitlines()
        message = json.loads(line)
        assert message["to"] == msisdn
        assert (message["encoding"], message["segments"]) == ("UCS-2", 3)
        assert world.warnings_of(msisdn) == [(1, 7, WarningState.SENT)]


def test_twilio_without_credentials(tmp_path: Path) -> None:
    """The sender names the missing environment variables and exits 2, as for any invalid
    setting."""
    env = environment(
        f"sqlite:///{tmp_path / 'r.sqlite3'}", gateway="twilio", twilio_from="+15005550006"
    )
    env.pop("TWILIO_ACCOUNT_SID", None)
    env.pop("TWILIO_AUTH_TOKEN", None)
    result = recycler("send", "--once", env=env)
    assert result.code == 2
    assert "gateway = twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in result.stderr


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["import", "topups", "--help"]])
def test_help(command: list[str]) -> None:
    """Every command explains itself."""
    result = recycler(*command, env=environment())
    assert result.code == 0
    assert "Usage:" in result.stdout
