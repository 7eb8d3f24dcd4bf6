"""The four-eyes workflow as people type it (issue 13), on both databases: every step, every
refusal (exit 2, nothing changed), and two supervisors approving at once.

Requests that must be old (a cool-off over, a request expired) are opened in-process with the
test's clock set back, then decided on the command line at the real time: both databases then
judge them by the same moments the command line would have written.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from jobs.database.schema import audit_events, transfer_decisions
from jobs.vocabulary import AuditEvent
from notifier.gateway import RecipientGatewayError
from notifier.testing import InMemoryGateway
from tests.support.cli import Command, environment, recycler, start
from tests.support.world import REQUESTER, World

ZONE = ZoneInfo("Asia/Phnom_Penh")


def today() -> date:
    return datetime.now(ZONE).date()


def national(msisdn: str) -> str:
    return "0" + msisdn[4:]


def live(world: World, owner: str = "alice", language: str = "en") -> str:
    """A number well inside its validity, owned since before the tests' clock."""
    world.clock.moment = datetime.now(UTC) - timedelta(days=30)
    return world.add_number(today() + timedelta(days=20), owner_id=owner, language=language)


def env_of(world: World, tmp_path: Path, **settings: str) -> dict[str, str]:
    return environment(
        world.url,
        console_outbox_path=str(tmp_path / "outbox.jsonl"),
        send_window="00:00-24:00",
        **settings,
    )


def request(env: dict[str, str], msisdn: str, *extra: str, actor: str = "agent-ana") -> Command:
    return recycler(
        "transfer",
        "request",
        national(msisdn),
        "--to",
        "mallory",
        "--consent-current",
        "SIGNED-ALICE",
        "--consent-new",
        "SIGNED-MALLORY",
        "--reason",
        "owner asked at shop 12",
        "--actor",
        actor,
        *extra,
        env=env,
    )


def approve(env: dict[str, str], request_id: int, *extra: str, actor: str = "sup-sok") -> Command:
    return recycler("transfer", "approve", str(request_id), "--actor", actor, *extra, env=env)


def opened_in_the_past(world: World, msisdn: str, hours_ago: float) -> int:
    """A transfer request opened `hours_ago`, its notice sent then."""
    world.clock.moment = datetime.now(UTC) - timedelta(hours=hours_ago)
    opened = world.four_eyes().request_transfer(
        msisdn, REQUESTER, to_owner="mallory", consent_current="A", consent_new="B"
    )
    world.send_notices()
    return opened.id


def outbox(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def refused(command: Command, text: str) -> None:
    assert command.code == 2, command
    assert text in command.stderr, command


class TestTheSeedCase:
    """The 2021 incident: one employee moves a live number to someone else. Now they cannot
    alone, and the owner hears of it first."""

    def test_one_employee_cannot_move_a_live_number(self, world: World, tmp_path: Path) -> None:
        msisdn = live(world, language="km")
        env = env_of(world, tmp_path)
        before = world.snapshot()

        # The one step of before is gone.
        one_step = recycler(
            "transfer", national(msisdn), "--to", "mallory", "--consent-current", "X",
            "--consent-new", "Y", env=env,
        )  # fmt: skip
        refused(one_step, "a transfer is no longer made in one step")
        assert world.snapshot() == before

        opened = request(env, msisdn, "--json", actor="employee-17")
        assert opened.code == 0, opened
        request_id = opened.json()["id"]
        assert opened.json()["state"] == "pending"

        refused(approve(env, request_id, actor="employee-17"), "someone else must approve it")
        refused(approve(env, request_id, actor="accomplice"), "is in its cool-off until")
        assert world.number(msisdn).owner_id == "alice"

        # The owner hears of it: the notice leaves first, to the number, in Khmer.
        sent = recycler("send", "--once", env=env)
        assert sent.code == 0, sent
        (notice,) = outbox(tmp_path)
        assert notice["to"] == msisdn
        assert notice["encoding"] == "UCS-2"
        assert "មានសំណើផ្ទេរលេខ " + national(msisdn) in notice["text"]
        assert "សូមទូរស័ព្ទ 888" in notice["text"]

        # The owner calls the care line: the request ends, the number is held at once.
        objected = recycler(
            "transfer", "object", str(request_id), "--reason", "owner called: never asked",
            "--actor", "care-dara", env=env,
        )  # fmt: skip
        assert objected.code == 0, objected
        refused(approve(env, request_id, actor="accomplice"), "already objected by care-dara")

        story = recycler("number", national(msisdn), "--json", env=env).json()
        assert story["state"] == "on hold"
        assert story["owner_id"] == "alice"
        assert [event["event_type"] for event in story["events"]] == [
            AuditEvent.REQUEST_OPENED,
            AuditEvent.NOTICE_SENT,
            AuditEvent.REQUEST_OBJECTED,
            AuditEvent.HOLD_PLACED,
        ]
        (kept,) = story["requests"]
        assert (kept["state"], kept["requested_by"], kept["decided_by"], kept["notice_state"]) == (
            "objected",
            "employee-17",
            "care-dara",
            "sent",
        )

    def test_a_raw_update_of_the_owner_fails(self, world: World) -> None:
        msisdn = live(world)
        with world.database.write() as connection:
            try:
                connection.exec_driver_sql(
                    f"UPDATE numbers SET owner_id = 'mallory' WHERE msisdn = '{msisdn}'"
                )
            except sa.exc.DBAPIError:
                pass
            else:
                raise AssertionError("the database let the owner change")
        assert world.number(msisdn).owner_id == "alice"


class TestEveryStep:
    """Request, notice, approval by a second person; the list and the story show it all."""

    def test_transfer(self, world: World, tmp_path: Path) -> None:
        msisdn = live(world)
        env = env_of(world, tmp_path, transfer_cooloff_hours="0")
        opened = request(env, msisdn)
        assert opened.code == 0, opened
        assert opened.stdout.startswith(
            f"request 1 opened: transfer of {msisdn} from alice to mallory"
        )
        refused(approve(env, 1), "the owner's notice is pending")

        assert recycler("send", "--once", env=env).code == 0
        assert [message["to"] for message in outbox(tmp_path)] == [msisdn]

        done = approve(env, 1, "--reason", "both consents checked", "--json")
        assert done.code == 0, done
        assert done.json() == {
            "msisdn": msisdn,
            "action": "transfer",
            "owner_id": "mallory",
            "summary": f"{msisdn} transferred to mallory (request 1)",
        }
        refused(approve(env, 1, actor="sup-other"), "already approved by sup-sok")

        (listed,) = recycler("transfer", "list", "--json", env=env).json()
        assert {
            key: listed[key]
            for key in (
                "state", "kind", "from_owner", "to_owner", "requested_by", "decided_by",
                "consent_current", "consent_new", "notice_state", "decision_reason",
            )
        } == {
            "state": "approved",
            "kind": "transfer",
            "from_owner": "alice",
            "to_owner": "mallory",
            "requested_by": "agent-ana",
            "decided_by": "sup-sok",
            "consent_current": "SIGNED-ALICE",
            "consent_new": "SIGNED-MALLORY",
            "notice_state": "sent",
            "decision_reason": "both consents checked",
        }  # fmt: skip
        assert recycler("transfer", "list", "--pending", "--json", env=env).json() == []
        story = recycler("number", national(msisdn), "--json", env=env).json()
        assert story["owner_id"] == "mallory"
        assert [event["event_type"] for event in story["events"]] == [
            AuditEvent.REQUEST_OPENED,
            AuditEvent.NOTICE_SENT,
            AuditEvent.REQUEST_APPROVED,
            AuditEvent.OWNERSHIP_TRANSFERRED,
        ]
        assert story["ownerships"][-1]["consent_new"] == "SIGNED-MALLORY"

    def test_cool_off(self, world: World, tmp_path: Path) -> None:
        """24 hours by default: 25 hours after the request it may be approved, 23 not."""
        ready = opened_in_the_past(world, live(world, owner="a"), hours_ago=25)
        waiting = opened_in_the_past(world, live(world, owner="b"), hours_ago=23)
        env = env_of(world, tmp_path)
        refused(approve(env, waiting), "is in its cool-off until")
        assert approve(env, ready).code == 0
        shorter = env_of(world, tmp_path, transfer_cooloff_hours="0.5")
        # The cool-off is the one set when the request was opened.
        refused(approve(shorter, waiting), "is in its cool-off until")

    def test_forced_reinstatement(self, world: World, tmp_path: Path) -> None:
        """Sold by mistake: the rightful owner gets it back without a cool-off, by a second
        person, after the holder was told."""
        world.clock.moment = datetime.now(UTC) - timedelta(hours=2)
        msisdn = world.add_number(today() - timedelta(days=93), owner_id="alice")
        world.add_warning(msisdn, 7, final_on=today() - timedelta(days=10))
        world.fresh_feed(today())
        env = env_of(world, tmp_path)
        assert recycler("run", "--allow-mass-recycle", env=env).code == 0
        sold = recycler(
            "pool", "sell", national(msisdn), "--owner", "bob", "--validity-end",
            (today() + timedelta(days=30)).isoformat(), env=env,
        )  # fmt: skip
        assert sold.code == 0, sold
        refused(
            recycler("reinstate", national(msisdn), "--reason", "paid in time", env=env),
            "add --force to open a request",
        )
        opened = recycler(
            "reinstate", national(msisdn), "--reason", "paid in time", "--force", "--json",
            "--actor", "care-dara", env=env,
        )  # fmt: skip
        assert opened.code == 0, opened
        assert (opened.json()["kind"], opened.json()["to_owner"]) == ("reinstatement", "alice")
        assert world.number(msisdn).owner_id == "bob"
        refused(approve(env, opened.json()["id"], actor="care-dara"), "someone else")
        refused(approve(env, opened.json()["id"]), "the owner's notice is pending")
        assert recycler("send", "--once", env=env).code == 0
        assert "មានសំណើប្រគល់លេខ" in outbox(tmp_path)[-1]["text"]  # bob bought it in Khmer
        back = approve(env, opened.json()["id"], "--json")
        assert back.code == 0, back
        assert back.json()["owner_id"] == "alice"


class TestRefusals:
    """Exit 2, a sentence, nothing changed."""

    def test_bad_requests(self, world: World, tmp_path: Path) -> None:
        env = env_of(world, tmp_path)
        msisdn = live(world)
        held = live(world, owner="hana")
        assert recycler("hold", national(held), "--reason", "dispute", env=env).code == 0
        world.clock.moment = datetime.now(UTC)
        past = world.add_number(today() - timedelta(days=95), owner_id="pat")
        before = world.snapshot()
        refused(request(env, "+855979999999"), "recycler knows no number +855979999999")
        refused(request(env, held), "is on hold: it cannot be transferred")
        refused(request(env, past), "is past its grace end")
        refused(
            recycler(
                "transfer", "request", national(msisdn), "--to", "alice", "--consent-current",
                "A", "--consent-new", "B", "--reason", "r", env=env,
            ),
            "already belongs to alice",
        )  # fmt: skip
        refused(
            recycler(
                "transfer", "request", national(msisdn), "--to", "bob", "--consent-current",
                " ", "--consent-new", "B", "--reason", "r", env=env,
            ),
            "needs the consent of both owners",
        )  # fmt: skip
        missing = recycler(
            "transfer", "request", national(msisdn), "--to", "bob", "--consent-current", "A",
            "--reason", "r", env=env,
        )  # fmt: skip
        refused(missing, "Missing option '--consent-new'")
        refused(approve(env, 99), "there is no request 99")
        refused(recycler("transfer", "approve", "first", env=env), "is not a valid integer")
        refused(recycler("transfer", "reject", "99", "--reason", "r", env=env), "no request 99")
        assert world.snapshot() == before

    def test_pool_number_and_decided_requests(self, world: World, tmp_path: Path) -> None:
        """A number in the pool cannot be asked for; a rejected request cannot be approved,
        nor rejected or objected to again."""
        env = env_of(world, tmp_path, transfer_cooloff_hours="0")
        world.clock.moment = datetime.now(UTC) - timedelta(hours=2)
        pooled = world.add_number(today() - timedelta(days=93), owner_id="paul")
        world.add_warning(pooled, 7, final_on=today() - timedelta(days=10))
        world.fresh_feed(today())
        assert recycler("run", "--allow-mass-recycle", env=env).code == 0
        msisdn = live(world)
        assert request(env, msisdn).code == 0
        assert recycler("send", "--once", env=env).code == 0
        rejected = recycler(
            "transfer", "reject", "1", "--reason", "consent form unsigned", "--actor",
            "sup-sok", env=env,
        )  # fmt: skip
        assert rejected.code == 0, rejected
        assert rejected.stdout.strip() == f"request 1 rejected: {msisdn} stays with alice"
        before = world.snapshot()
        refused(request(env, pooled), "is in the resale pool: sell it with")
        refused(approve(env, 1, actor="sup-vanna"), "already rejected by sup-sok")
        refused(recycler("transfer", "object", "1", "--reason", "r", env=env), "already rejected")
        assert world.snapshot() == before
        assert world.number(msisdn).owner_id == "alice"

    def test_approval_after_the_number_changed(self, world: World, tmp_path: Path) -> None:
        """Held since the request; moved by another request; each refused."""
        env = env_of(world, tmp_path, transfer_cooloff_hours="0")
        msisdn = live(world)
        first = request(env, msisdn).stdout.split()[1]
        second = recycler(
            "transfer", "request", national(msisdn), "--to", "bob", "--consent-current", "A",
            "--consent-new", "B", "--reason", "r", env=env,
        ).stdout.split()[1]  # fmt: skip
        assert recycler("send", "--once", env=env).code == 0
        assert recycler("hold", national(msisdn), "--reason", "dispute", env=env).code == 0
        before = world.snapshot()
        refused(approve(env, int(first)), "is on hold: it cannot be transferred")
        assert world.snapshot() == before
        assert recycler("release", national(msisdn), "--reason", "settled", env=env).code == 0
        assert approve(env, int(second)).code == 0
        before = world.snapshot()
        refused(approve(env, int(first)), "has been with bob since")
        assert world.snapshot() == before

    def test_approval_after_a_recycle(self, world: World, tmp_path: Path) -> None:
        """Requested in grace, recycled before anyone approved, then sold to someone else."""
        world.clock.moment = datetime.now(UTC) - timedelta(days=3)
        msisdn = world.add_number(today() - timedelta(days=92), owner_id="alice")
        world.add_warning(msisdn, 0, final_on=today() - timedelta(days=10))
        request_id = (
            world.four_eyes(transfer_cooloff_hours=0)
            .request_transfer(
                msisdn, REQUESTER, to_owner="mallory", consent_current="A", consent_new="B"
            )
            .id
        )
        world.send_notices()
        world.fresh_feed(today())
        env = env_of(world, tmp_path)
        assert recycler("run", "--allow-mass-recycle", env=env).code == 0
        refused(approve(env, request_id), "was recycled since")
        sold = recycler(
            "pool", "sell", national(msisdn), "--owner", "bob", "--validity-end",
            (today() + timedelta(days=30)).isoformat(), env=env,
        )  # fmt: skip
        assert sold.code == 0
        refused(approve(env, request_id), "has been with bob since")
        assert world.number(msisdn).owner_id == "bob"

    def test_expired(self, world: World, tmp_path: Path) -> None:
        """After transfer_request_ttl_days (7) nobody can approve or reject it."""
        request_id = opened_in_the_past(world, live(world), hours_ago=8 * 24)
        env = env_of(world, tmp_path)
        refused(approve(env, request_id), "it expired on")
        refused(
            recycler("transfer", "reject", str(request_id), "--reason", "r", env=env),
            "it expired on",
        )
        (listed,) = recycler("transfer", "list", "--json", env=env).json()
        assert listed["state"] == "expired"

    def test_a_notice_that_failed(self, world: World, tmp_path: Path) -> None:
        """Failed for good: approval only with --notice-failed and a reason."""
        msisdn = live(world)
        world.clock.moment = datetime.now(UTC) - timedelta(hours=30)
        request_id = (
            world.four_eyes()
            .request_transfer(
                msisdn, REQUESTER, to_owner="mallory", consent_current="A", consent_new="B"
            )
            .id
        )
        gateway = InMemoryGateway()
        gateway.refuse(msisdn, RecipientGatewayError("21614", "not a mobile number"))
        world.send_notices(gateway)
        env = env_of(world, tmp_path)
        refused(approve(env, request_id), "approve only with --notice-failed REASON")
        refused(approve(env, request_id, "--notice-failed", " "), "may not be blank")
        done = approve(env, request_id, "--notice-failed", "owner seen in shop with ID")
        assert done.code == 0, done
        with world.database.read() as connection:
            assert connection.execute(sa.select(transfer_decisions.c.notice_failed)).scalar() == (
                "owner seen in shop with ID"
            )

    def test_notice_failed_for_a_notice_that_went(self, world: World, tmp_path: Path) -> None:
        request_id = opened_in_the_past(world, live(world), hours_ago=30)
        refused(
            approve(env_of(world, tmp_path), request_id, "--notice-failed", "why"),
            "--notice-failed is for a notice that failed",
        )


class TestTheBrake:
    def test_one_actor_a_day(self, world: World, tmp_path: Path) -> None:
        """The third request of the day is refused and recorded; another person may ask."""
        env = env_of(world, tmp_path, max_transfer_requests_per_actor_per_day="2")
        chosen = [live(world, owner=f"owner-{index}") for index in range(3)]
        assert request(env, chosen[0]).code == 0
        assert request(env, chosen[1]).code == 0
        refused(request(env, chosen[2]), "agent-ana has opened 2 requests today")
        assert request(env, chosen[2], actor="agent-bopha").code == 0
        with world.database.read() as connection:
            refusals = connection.execute(
                sa.select(audit_events.c.msisdn, audit_events.c.actor).where(
                    audit_events.c.event_type == AuditEvent.REQUEST_REFUSED
                )
            ).all()
        assert [tuple(row) for row in refusals] == [(chosen[2], "agent-ana")]


class TestRace:
    def test_two_supervisors_approve_at_once(self, world: World, tmp_path: Path) -> None:
        """Exactly one wins; the other is told it was already approved."""
        msisdn = live(world)
        request_id = opened_in_the_past(world, msisdn, hours_ago=25)
        env = env_of(world, tmp_path)
        racing = [
            start("transfer", "approve", str(request_id), "--actor", actor, env=env)
            for actor in ("sup-sok", "sup-vanna")
        ]
        results = sorted(command.finish().code for command in racing)
        assert results == [0, 2]
        with world.database.read() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(
                transfer_decisions
            )).scalar_one() == 1  # fmt: skip
        assert world.number(msisdn).owner_id == "mallory"
