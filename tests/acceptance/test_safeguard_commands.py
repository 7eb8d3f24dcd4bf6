"""The safeguard commands as an operator types them: outputs, refusals, exit codes."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from jobs.vocabulary import AuditEvent, OwnershipEnd, OwnershipStart
from tests.support.cli import environment, recycler
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")


def today() -> date:
    return datetime.now(ZONE).date()


def recycled_today(world: World) -> str:
    msisdn = world.add_number(today() - timedelta(days=93), owner_id="alice")
    world.add_warning(msisdn, 7, final_on=today() - timedelta(days=10))
    world.fresh_feed(today())
    assert recycler("run", "--allow-mass-recycle", env=environment(world.url)).code == 0
    return msisdn


class TestSeedCase:
    """The operator's 2021 incident, replayed: recycled, sold, complaint, hold, reinstate."""

    def test_wrongful_sale_undone_with_one_command(self, world: World, tmp_path: Path) -> None:
        """Every step's exit code, the refusal without --force, and the story afterwards."""
        env = environment(world.url)
        msisdn = recycled_today(world)
        national = "0" + msisdn[4:]

        listed = recycler(
            "pool", "list", "--available", "--csv", str(tmp_path / "pool.csv"), env=env
        )
        assert listed.code == 0, listed
        with (tmp_path / "pool.csv").open() as handle:
            (entry,) = list(csv.DictReader(handle))
        assert (entry["msisdn"], entry["state"], entry["previous_owner"]) == (
            msisdn,
            "available",
            "alice",
        )

        sold = recycler(
            "pool",
            "sell",
            national,
            "--owner",
            "bob",
            "--validity-end",
            (today() + timedelta(days=30)).isoformat(),
            "--actor",
            "shop-12",
            env=env,
        )
        assert sold.code == 0, sold
        assert sold.stdout.strip() == f"{msisdn} sold to bob"

        held = recycler("hold", national, "--reason", "complaint: wrongful resale", env=env)
        assert held.code == 0, held

        refused = recycler("reinstate", national, "--reason", "paid in time", env=env)
        assert refused.code == 2
        assert f"{msisdn} was sold to bob on {today().isoformat()}; reinstating takes it" in (
            refused.stderr
        )

        # Forced, it is a request: bob is told, and someone else approves it.
        opened = recycler(
            "reinstate", national, "--reason", "paid in time", "--force", "--json", env=env
        )
        assert opened.code == 0, opened
        assert (
            recycler("send", "--once", env={**env, "RECYCLER_SEND_WINDOW": "00:00-24:00"}).code == 0
        )
        back = recycler(
            "transfer", "approve", str(opened.json()["id"]), "--actor", "supervisor-sok",
            "--json", env=env,
        )  # fmt: skip
        assert back.code == 0, back
        assert back.json()["owner_id"] == "alice"

        story = recycler("number", national, "--json", env=env).json()
        assert [event["event_type"] for event in story["events"]] == [
            AuditEvent.NUMBER_RECYCLED,
            AuditEvent.OWNERSHIP_SOLD,
            AuditEvent.HOLD_PLACED,
            AuditEvent.REQUEST_OPENED,
            AuditEvent.NOTICE_SENT,
            AuditEvent.REQUEST_APPROVED,
            AuditEvent.OWNERSHIP_REINSTATED,
        ]
        assert story["events"][1]["actor"] == "shop-12"
        assert story["events"][2]["reason"] == "complaint: wrongful resale"
        assert [(o["owner_id"], o["start_cause"], o["end_cause"]) for o in story["ownerships"]] == [
            ("alice", OwnershipStart.IMPORT, OwnershipEnd.RECYCLE),
            ("bob", OwnershipStart.SALE, OwnershipEnd.REINSTATEMENT),
            ("alice", OwnershipStart.REINSTATEMENT, None),
        ]
        assert story["state"] == "on hold"

        check = recycler(
            "reassigned", national, "--since", (today() - timedelta(days=1)).isoformat(), env=env
        )
        assert check.code == 0
        assert check.stdout.startswith(f"yes: {msisdn} since ")


class TestRefusals:
    """Bad or missing input: exit 2, a sentence, nothing changed."""

    def test_transfer_needs_both_consents(self, world: World) -> None:
        """A missing option is a usage error; a blank one is refused by recycler."""
        msisdn = world.add_number(today(), owner_id="alice")
        env = environment(world.url)
        missing = recycler(
            "transfer", "request", msisdn, "--to", "bob", "--consent-current", "C1",
            "--reason", "r", env=env,
        )  # fmt: skip
        assert missing.code == 2
        assert "Missing option '--consent-new'" in missing.stderr
        blank = recycler(
            "transfer",
            "request",
            msisdn,
            "--reason",
            "r",
            "--to",
            "bob",
            "--consent-current",
            "C1",
            "--consent-new",
            " ",
            env=env,
        )
        assert blank.code == 2
        assert "needs the consent of both owners" in blank.stderr
        assert world.number(msisdn).owner_id == "alice"

    def test_unknown_and_malformed_numbers(self, world: World) -> None:
        """Every safeguard command answers them the same way."""
        env = environment(world.url)
        for command in (
            ("hold", "017999888", "--reason", "x"),
            ("release", "017999888", "--reason", "x"),
            ("reinstate", "017999888", "--reason", "x"),
            (
                "transfer",
                "request",
                "017999888",
                "--to",
                "b",
                "--consent-current",
                "a",
                "--consent-new",
                "b",
                "--reason",
                "x",
            ),
            ("pool", "sell", "017999888", "--owner", "b", "--validity-end", "2027-01-01"),
        ):
            result = recycler(*command, env=env)
            assert result.code == 2, (command, result)
            assert "recycler knows no number +85517999888" in result.stderr
        malformed = recycler("hold", "12-ab", "--reason", "x", env=env)
        assert malformed.code == 2
        assert "not a phone number" in malformed.stderr


class TestReassigned:
    """The check a bank runs, and the monthly export."""

    def test_answers_and_export(self, world: World, tmp_path: Path) -> None:
        """yes for a number in the pool, no for an owner since the date, unknown before the
        records, a refusal after today; and the month's disconnections."""
        env = environment(world.url)
        msisdn = recycled_today(world)
        added_on = world.clock.now().astimezone(ZONE).date()  # the records begin there
        yes = recycler(
            "reassigned", msisdn, "--since", today().isoformat(), "--json", env=env
        ).json()
        assert yes == {
            "msisdn": msisdn,
            "since": today().isoformat(),
            "reassigned": "yes",
            "owner_since": None,
            "records_from": added_on.isoformat(),
        }
        said = recycler("reassigned", "0" + msisdn[4:], "--since", today().isoformat(), env=env)
        assert said.code == 0, said
        assert said.stdout == (
            f"yes: {msisdn} since {today().isoformat()}: it has no owner now (in the resale pool)\n"
        )
        fresh = world.add_number(today() + timedelta(days=30))
        same = recycler("reassigned", "check", fresh, "--since", today().isoformat(), env=env)
        assert same.stdout.startswith(f"no: {fresh} since {today().isoformat()}: the same owner")
        before = recycler("reassigned", fresh, "--since", "2001-01-01", env=env)
        assert before.code == 0
        assert before.stdout.startswith("unknown: ")
        assert f"records of it begin on {added_on.isoformat()}" in before.stdout
        tomorrow = (today() + timedelta(days=1)).isoformat()
        future = recycler("reassigned", fresh, "--since", tomorrow, env=env)
        assert future.code == 2
        assert "after today" in future.stderr
        needs_date = recycler("reassigned", msisdn, env=env)
        assert needs_date.code == 2
        assert "--since" in needs_date.stderr

        month = today().strftime("%Y-%m")
        target = tmp_path / "disconnected.csv"
        exported = recycler("reassigned", "export", "--month", month, "--csv", str(target), env=env)
        assert exported.code == 0, exported
        with target.open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows == [
            {"msisdn": msisdn, "disconnected_on": today().isoformat(), "cause": "recycle"}
        ]
        bad = recycler("reassigned", "export", "--month", "2026-13", "--csv", str(target), env=env)
        assert bad.code == 2
        assert "is not a month" in bad.stderr
