"""Four eyes below the command line: the owner's notice in the outbox, and the database's own
refusal of an owner change that no second person approved (migration 0007), on both databases.
The command line's steps, refusals and races are in tests/acceptance/test_four_eyes.py."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from jobs.database.schema import (
    audit_events,
    numbers,
    ownerships,
    transfer_decisions,
    transfer_requests,
)
from jobs.errors import InputRefused
from jobs.safeguards.changes import Operator
from jobs.sending.dispatcher import Dispatcher
from jobs.vocabulary import AuditEvent, RequestDecision, RequestState, WarningState
from notifier.gateway import RecipientGatewayError
from notifier.testing import InMemoryGateway
from tests.support.world import APPROVER, REQUESTER, World, as_of_noon

D = date(2026, 11, 20)


def live(world: World, owner: str = "alice", language: str = "en") -> str:
    world.clock.moment = as_of_noon(D, world.settings)
    return world.add_number(D + timedelta(days=20), owner_id=owner, language=language)


def opened(world: World, msisdn: str, **settings: Any) -> int:
    return (
        world.four_eyes(**settings)
        .request_transfer(
            msisdn,
            REQUESTER,
            to_owner="mallory",
            consent_current="FORGED-1",
            consent_new="FORGED-2",
        )
        .id
    )


class TestTheOwnersNotice:
    """Queued with the request, in the owner's language, ahead of the night's warnings."""

    @pytest.mark.parametrize(
        ("language", "beginning"),
        [
            ("en", "On 20 November 2026 a request was made to move your number 012"),
            ("km", "នៅថ្ងៃទី 20 ខែវិច្ឆិកា ឆ្នាំ 2026 មានសំណើផ្ទេរលេខ 012"),
        ],
    )
    def test_text_in_the_owners_language(self, world: World, language: str, beginning: str) -> None:
        """The date of the request, the care line, the end of the cool-off (local time)."""
        msisdn = live(world, language=language)
        opened(world, msisdn, care_line="1800 888")
        ((state, text),) = world.notices_of(msisdn)
        assert state == WarningState.PENDING
        assert text.startswith(beginning)
        assert "1800 888" in text
        # Requested at noon local time on the 20th: 24 hours of cool-off.
        assert ("12:00 on 21 November 2026" if language == "en" else "ម៉ោង 12:00 ថ្ងៃទី 21") in text

    def test_notices_go_before_warnings(self, world: World) -> None:
        """Fifty warnings are due; a sender taking one message takes the notice."""
        world.clock.moment = as_of_noon(D, world.settings)
        world.queue_warnings(50)
        msisdn = live(world)
        opened(world, msisdn)
        gateway = InMemoryGateway()
        settings = world.with_settings(send_window="00:00-24:00").settings
        Dispatcher(world.database, settings, gateway, world.clock).drain(limit=1)
        assert [message.to for message in gateway.sent] == [msisdn]
        assert world.notices_of(msisdn)[0][0] == WarningState.SENT
        assert world.events_of(msisdn)[-1] == AuditEvent.NOTICE_SENT

    def test_a_notice_is_no_warning(self, world: World) -> None:
        """A sent notice is not notice of recycling: a number past grace whose only message is
        the owner's notice gets its final notice, and is not recycled that night."""
        world.clock.moment = as_of_noon(D - timedelta(days=5), world.settings)
        msisdn = world.add_number(D - timedelta(days=92), owner_id="alice")  # grace ends D-2
        opened(world, msisdn)
        world.send_notices()
        world.clock.moment = as_of_noon(D, world.settings)
        world.fresh_feed(D)
        report = world.run(D, allow_mass_recycle=True)
        assert report.recycled == 0
        assert world.number(msisdn).owner_id == "alice"
        assert world.warnings_of(msisdn) == [(1, 0, WarningState.PENDING)]

    def test_rejected_before_sending_is_never_sent(self, world: World) -> None:
        """The request is over: its notice is cancelled, and the sender finds nothing."""
        msisdn = live(world)
        request = opened(world, msisdn)
        world.four_eyes().reject(request, APPROVER)
        assert world.send_notices().sent == []
        assert world.notices_of(msisdn)[0][0] == WarningState.CANCELLED

    def test_a_notice_to_a_number_that_changed_hands_is_cancelled(self, world: World) -> None:
        """Recycled before its notice went: whoever has the number next must not get it, and
        the request can no longer be approved."""
        world.clock.moment = as_of_noon(D - timedelta(days=3), world.settings)
        msisdn = world.add_number(D - timedelta(days=92), owner_id="alice")  # grace ends D-2
        world.add_warning(msisdn, 0, final_on=D - timedelta(days=10))
        request = opened(world, msisdn, transfer_cooloff_hours=0)
        world.clock.moment = as_of_noon(D, world.settings)
        world.fresh_feed(D)
        assert world.run(D, allow_mass_recycle=True).recycled == 1
        assert world.send_notices().sent == []
        assert world.notices_of(msisdn)[0][0] == WarningState.CANCELLED
        assert world.events_of(msisdn)[-1] == AuditEvent.NOTICE_CANCELLED
        with pytest.raises(InputRefused, match="was recycled since"):
            world.four_eyes().approve(request, APPROVER)


class TestTheDatabaseRefuses:
    """What an employee with the job's database role would try, statement by statement."""

    def _move(self, world: World, msisdn: str, *, request_id: int | None, decision: Any) -> str:
        """End alice's ownership, start mallory's (naming `request_id`), write `decision`
        first if given, change the owner: in one transaction; returns the refusal."""
        now = world.clock.now()

        def moving(connection: Any) -> None:
            if decision is not None:
                connection.execute(transfer_decisions.insert().values(**decision))
            connection.execute(
                sa.update(ownerships)
                .where(ownerships.c.msisdn == msisdn, ownerships.c.ended_at.is_(None))
                .values(ended_at=now, ended_on=D, end_cause="transfer", ended_by="mallory")
            )
            connection.execute(
                ownerships.insert().values(
                    msisdn=msisdn,
                    owner_id="mallory",
                    language="en",
                    started_at=now,
                    started_on=D,
                    start_cause="transfer",
                    started_by="mallory",
                    consent_current="FORGED-1",
                    consent_new="FORGED-2",
                    request_id=request_id,
                )
            )
            connection.execute(
                sa.update(numbers).where(numbers.c.msisdn == msisdn).values(owner_id="mallory")
            )

        with pytest.raises(sa.exc.DBAPIError) as raised, world.database.write() as connection:
            moving(connection)
        assert world.number(msisdn).owner_id == "alice"
        return str(raised.value.orig)

    @staticmethod
    def _approval(request_id: int, world: World, by: str = "supervisor-sok") -> dict[str, Any]:
        return {
            "request_id": request_id,
            "decision": RequestDecision.APPROVED,
            "decided_at": world.clock.now(),
            "decided_by": by,
            "reason": "looks fine",
        }

    def test_a_transfer_with_consents_but_no_request(self, world: World) -> None:
        """The one-step transfer of before, written by hand: refused."""
        msisdn = live(world)
        assert "approved" in self._move(world, msisdn, request_id=None, decision=None)

    def test_a_request_nobody_approved(self, world: World) -> None:
        msisdn = live(world)
        request = opened(world, msisdn, transfer_cooloff_hours=0)
        world.send_notices()
        assert "approved" in self._move(world, msisdn, request_id=request, decision=None)

    def test_approved_by_its_own_requester(self, world: World) -> None:
        msisdn = live(world)
        request = opened(world, msisdn, transfer_cooloff_hours=0)
        world.send_notices()
        approval = self._approval(request, world, by=REQUESTER.actor)
        message = self._move(world, msisdn, request_id=request, decision=approval)
        assert "second person" in message or "approved by its own requester" in message

    def test_approved_before_the_cool_off_ended(self, world: World) -> None:
        msisdn = live(world)
        request = opened(world, msisdn)  # 24 hours of cool-off
        world.send_notices()
        message = self._move(
            world, msisdn, request_id=request, decision=self._approval(request, world)
        )
        assert "cool-off" in message

    def test_approved_before_the_notice_went(self, world: World) -> None:
        msisdn = live(world)
        request = opened(world, msisdn, transfer_cooloff_hours=0)
        message = self._move(
            world, msisdn, request_id=request, decision=self._approval(request, world)
        )
        assert "notice" in message

    def test_a_failed_notice_needs_the_approvers_word(self, world: World) -> None:
        msisdn = live(world)
        request = opened(world, msisdn, transfer_cooloff_hours=0)
        gateway = InMemoryGateway()
        gateway.refuse(msisdn, RecipientGatewayError("21614", "not a mobile number"))
        world.send_notices(gateway)
        assert world.notices_of(msisdn)[0][0] == WarningState.FAILED
        message = self._move(
            world, msisdn, request_id=request, decision=self._approval(request, world)
        )
        assert "notice" in message

    def test_a_request_for_someone_else(self, world: World) -> None:
        """An approved request to move the number to bob does not let it go to mallory."""
        msisdn = live(world)
        request = (
            world.four_eyes(transfer_cooloff_hours=0)
            .request_transfer(
                msisdn, REQUESTER, to_owner="bob", consent_current="A", consent_new="B"
            )
            .id
        )
        world.send_notices()
        message = self._move(
            world, msisdn, request_id=request, decision=self._approval(request, world)
        )
        assert "not what request" in message or "approved by a second person" in message

    @pytest.mark.postgresql_only
    def test_an_approval_from_an_earlier_transaction(self, world: World) -> None:
        """PostgreSQL also requires the approval to be written by the transaction that moves
        the number (SQLite cannot tell transactions apart: there, one approval carries out one
        move, by the unique request of ownerships)."""
        msisdn = live(world)
        request = opened(world, msisdn, transfer_cooloff_hours=0)
        world.send_notices()
        with world.database.write() as connection:
            connection.execute(transfer_decisions.insert().values(**self._approval(request, world)))
        message = self._move(world, msisdn, request_id=request, decision=None)
        assert "was not approved in this transaction" in message

    def test_one_approval_moves_a_number_once(self, world: World) -> None:
        """A carried-out request cannot be named by a second ownership."""
        msisdn = live(world)
        world.transfer(msisdn, "mallory")
        with world.database.read() as connection:
            request = connection.execute(sa.select(transfer_requests.c.id)).scalar_one()
        with pytest.raises(sa.exc.IntegrityError), world.database.write() as connection:
            connection.execute(
                ownerships.insert().values(
                    msisdn=msisdn,
                    owner_id="mallory-2",
                    language="en",
                    started_at=world.clock.now(),
                    started_on=D,
                    start_cause="transfer",
                    started_by="mallory",
                    consent_current="A",
                    consent_new="B",
                    request_id=request,
                )
            )

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE transfer_requests SET requested_by = 'someone-else'",
            "DELETE FROM transfer_requests",
            "UPDATE transfer_decisions SET decided_by = 'someone-else'",
            "DELETE FROM transfer_decisions",
            "UPDATE ownerships SET request_id = NULL WHERE request_id IS NOT NULL",
        ],
    )
    def test_requests_and_decisions_are_append_only(self, world: World, statement: str) -> None:
        msisdn = live(world)
        world.transfer(msisdn, "bob")
        with pytest.raises(sa.exc.DBAPIError), world.database.write() as connection:
            connection.exec_driver_sql(statement)
        with world.database.read() as connection:
            assert connection.execute(
                sa.select(transfer_decisions.c.decided_by, transfer_requests.c.requested_by).join(
                    transfer_requests
                )
            ).one() == ("supervisor-sok", "agent-ana")


class TestRequests:
    """What the service keeps of each request and each refusal."""

    def test_states_over_time(self, world: World) -> None:
        """Pending, then expired after transfer_request_ttl_days; approved, rejected and
        objected stay what they were."""
        numbers_ = [live(world, owner=f"owner-{index}") for index in range(4)]
        eyes = world.four_eyes(transfer_cooloff_hours=0, transfer_request_ttl_days=7)
        ids = [opened(world, msisdn, transfer_cooloff_hours=0) for msisdn in numbers_]
        world.send_notices()
        eyes.approve(ids[0], APPROVER)
        eyes.reject(ids[1], APPROVER)
        eyes.object(ids[2], Operator("care-agent", "owner called: never asked"))
        assert [request.state for request in eyes.requests()] == [
            RequestState.APPROVED,
            RequestState.REJECTED,
            RequestState.OBJECTED,
            RequestState.PENDING,
        ]
        world.clock.advance(timedelta(days=7))
        assert [request.state for request in eyes.requests()][3] == RequestState.EXPIRED
        assert eyes.requests(pending=True) == []
        with pytest.raises(InputRefused, match="expired on"):
            eyes.approve(ids[3], APPROVER)

    def test_the_brake_refusal_is_audited(self, world: World) -> None:
        msisdn = live(world)
        eyes = world.four_eyes(max_transfer_requests_per_actor_per_day=1)
        eyes.request_transfer(msisdn, REQUESTER, to_owner="b", consent_current="1", consent_new="2")
        with pytest.raises(InputRefused, match="has opened 1 requests today"):
            eyes.request_transfer(
                msisdn, REQUESTER, to_owner="c", consent_current="1", consent_new="2"
            )
        with world.database.read() as connection:
            refusal = connection.execute(
                sa.select(audit_events.c.actor, audit_events.c.details).where(
                    audit_events.c.event_type == AuditEvent.REQUEST_REFUSED
                )
            ).one()
        assert refusal.actor == REQUESTER.actor
        assert "max_transfer_requests_per_actor_per_day = 1" in refusal.details["refusal"]
        # The next local day, the same person may ask again.
        world.clock.advance(timedelta(days=1))
        eyes.request_transfer(msisdn, REQUESTER, to_owner="c", consent_current="1", consent_new="2")

    def test_objection_holds_the_number(self, world: World) -> None:
        msisdn = live(world)
        request = opened(world, msisdn)
        world.four_eyes().object(request, Operator("care-agent", "the owner called"))
        with world.database.read() as connection:
            held = connection.execute(
                sa.select(numbers.c.on_hold).where(numbers.c.msisdn == msisdn)
            ).scalar_one()
        assert held is True
        assert world.events_of(msisdn)[-2:] == [AuditEvent.REQUEST_OBJECTED, AuditEvent.HOLD_PLACED]
