"""Holds, sales, transfers and reinstatements: every happy path and every refusal, on both
databases; a refusal changes nothing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from jobs.database.schema import audit_events, ownerships
from jobs.errors import InputRefused, NumberNotFound
from jobs.inspection import number_view
from jobs.safeguards.changes import Operator
from jobs.safeguards.ownership import Safeguards
from jobs.safeguards.pool import pool_entries
from jobs.vocabulary import AuditEvent, OwnershipEnd, OwnershipStart, WarningState
from tests.support.world import REQUESTER, World, as_of_noon

D = date(2026, 11, 20)
CARE = Operator(actor="care-agent-7", reason="customer complaint 4711")


def recycled(world: World, owner: str = "alice", quarantine: int = 0) -> str:
    """A number recycled on D into the pool, available from D + quarantine."""
    chosen = world.with_settings(quarantine_days=quarantine) if quarantine else world
    world.clock.moment = as_of_noon(D, world.settings)
    msisdn = chosen.add_number(D - timedelta(days=93), owner_id=owner)
    chosen.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
    chosen.fresh_feed(D)
    assert chosen.run(D, allow_mass_recycle=True).recycled == 1
    world.clock.moment = as_of_noon(D, world.settings) + timedelta(hours=1)
    return msisdn


def owners(world: World, msisdn: str) -> list[tuple[str, str, str | None]]:
    """(owner, start cause, end cause) of every ownership, oldest first."""
    with world.database.read() as connection:
        rows = connection.execute(
            sa.select(ownerships.c.owner_id, ownerships.c.start_cause, ownerships.c.end_cause)
            .where(ownerships.c.msisdn == msisdn)
            .order_by(ownerships.c.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def unchanged(world: World, msisdn: str, action: object) -> str:
    """Run a refused action; assert nothing changed; return its message."""
    before = (world.snapshot(), owners(world, msisdn))
    with pytest.raises(InputRefused) as refused:
        action()  # type: ignore[operator]
    assert (world.snapshot(), owners(world, msisdn)) == before
    assert refused.value.exit_code == 2
    return refused.value.message


class TestHold:
    """Held numbers get no warnings and are never recycled, sold or transferred."""

    def test_hold_stops_warnings_and_recycling(self, world: World) -> None:
        """On hold: the pending warning is cancelled, the run skips it and counts it."""
        warned = world.add_number(D - timedelta(days=83))
        due = world.add_number(D - timedelta(days=93))
        world.add_warning(due, 7, final_on=D - timedelta(days=10))
        world.add_warning(warned, 14, state=WarningState.PENDING)
        for msisdn in (warned, due):
            Safeguards.of(world.database, world.settings, world.clock).hold(msisdn, CARE)
        assert world.warnings_of(warned) == [(1, 14, WarningState.CANCELLED)]
        world.fresh_feed(D)
        report = world.run(D, allow_mass_recycle=True)
        assert (report.on_hold, report.recycled, report.warnings_queued) == (2, 0, {})
        assert not world.number(due).in_pool
        assert world.events_of(warned)[-1] == AuditEvent.HOLD_PLACED

    def test_release_rearms(self, world: World) -> None:
        """Released: a new cycle, so a number past grace gets a final notice, not a recycle."""
        due = world.add_number(D - timedelta(days=93))
        world.add_warning(due, 7, final_on=D - timedelta(days=10))
        Safeguards.of(world.database, world.settings, world.clock).hold(due, CARE)
        Safeguards.of(world.database, world.settings, world.clock).release(due, CARE)
        world.fresh_feed(D)
        report = world.run(D, allow_mass_recycle=True)
        assert (report.recycled, report.warnings_queued) == (0, {0: 1})
        assert world.number(due).cycle == 3

    def test_refusals(self, world: World) -> None:
        """Twice on hold, release of a free number, blank reason, an unknown number."""
        msisdn = world.add_number(D)
        Safeguards.of(world.database, world.settings, world.clock).hold(msisdn, CARE)
        again = unchanged(
            world,
            msisdn,
            lambda: Safeguards.of(world.database, world.settings, world.clock).hold(msisdn, CARE),
        )
        assert again.startswith(f"{msisdn} is already on hold since ")
        assert "by care-agent-7" in again
        Safeguards.of(world.database, world.settings, world.clock).release(msisdn, CARE)
        assert (
            unchanged(
                world,
                msisdn,
                lambda: Safeguards.of(world.database, world.settings, world.clock).release(
                    msisdn, CARE
                ),
            )
            == f"{msisdn} is not on hold"
        )
        with pytest.raises(InputRefused, match="a reason is required"):
            Operator(actor="x", reason="  ")
        with pytest.raises(NumberNotFound, match="knows no number"):
            Safeguards.of(world.database, world.settings, world.clock).hold("+85517999888", CARE)
        # A malformed number never reaches the operations: the command line reads it first
        # (tests/acceptance/test_safeguard_commands.py).


class TestPool:
    """Only an available number (past quarantine, not held) is sold."""

    def test_sale(self, world: World) -> None:
        """Sold: a new owner and ownership, out of the pool, an audit event."""
        msisdn = recycled(world)
        assert [entry["state"] for entry in pool_entries(world.database, D)] == ["available"]
        change = Safeguards.of(world.database, world.settings, world.clock).sell(
            msisdn,
            CARE,
            owner="bob",
            language="en",
            validity_end=D + timedelta(days=30),
        )
        assert change.owner_id == "bob"
        state = world.number(msisdn)
        assert (state.owner_id, state.in_pool, state.validity_end) == (
            "bob",
            False,
            D + timedelta(days=30),
        )
        assert owners(world, msisdn) == [
            ("alice", OwnershipStart.IMPORT, OwnershipEnd.RECYCLE),
            ("bob", OwnershipStart.SALE, None),
        ]
        assert world.events_of(msisdn)[-1] == AuditEvent.OWNERSHIP_SOLD
        assert list(pool_entries(world.database, D)) == []

    def test_refusals(self, world: World) -> None:
        """In-grace number, quarantined number, held number, past validity end."""
        owned = world.add_number(D - timedelta(days=30))

        def sale(msisdn: str, validity: date = D + timedelta(days=30)) -> object:
            return lambda: Safeguards.of(world.database, world.settings, world.clock).sell(
                msisdn,
                CARE,
                owner="bob",
                language="km",
                validity_end=validity,
            )

        assert "is not in the resale pool (it belongs to owner-1)" in unchanged(
            world, owned, sale(owned)
        )
        quarantined = recycled(world, owner="carol", quarantine=30)
        assert unchanged(world, quarantined, sale(quarantined)) == (
            f"{quarantined} is in quarantine until 2026-12-20"
        )
        available = recycled(world, owner="dave")
        Safeguards.of(world.database, world.settings, world.clock).hold(available, CARE)
        assert "is on hold: it cannot be sold" in unchanged(world, available, sale(available))
        Safeguards.of(world.database, world.settings, world.clock).release(available, CARE)
        assert "is already past" in unchanged(
            world, available, sale(available, D - timedelta(days=1))
        )


class TestTransfer:
    """The only way to change the owner of an active or in-grace number: a request, the
    owner's notice, a second person's approval (tests/integration/test_four_eyes.py has every
    step; here, what the transfer does to the number)."""

    def test_transfer_with_both_consents(self, world: World) -> None:
        """Both references stored; old warnings cancelled; audit names the previous owner."""
        msisdn = world.add_number(D - timedelta(days=83), owner_id="alice")
        world.add_warning(msisdn, 7, state=WarningState.PENDING)
        world.transfer(msisdn, "bob", consent_current="SIGNED-ALICE-1", consent_new="SIGNED-BOB-1")
        assert world.number(msisdn).owner_id == "bob"
        assert owners(world, msisdn) == [
            ("alice", OwnershipStart.IMPORT, OwnershipEnd.TRANSFER),
            ("bob", OwnershipStart.TRANSFER, None),
        ]
        with world.database.read() as connection:
            consents = connection.execute(
                sa.select(ownerships.c.consent_current, ownerships.c.consent_new).where(
                    ownerships.c.owner_id == "bob"
                )
            ).one()
        assert tuple(consents) == ("SIGNED-ALICE-1", "SIGNED-BOB-1")
        story = number_view(
            world.database, world.settings, world.clock, world.settings.rules, msisdn
        )
        assert story.ownerships[-1]["consent_current"] == "SIGNED-ALICE-1"
        assert story.ownerships[-1]["consent_new"] == "SIGNED-BOB-1"
        assert story.events[-1]["event_type"] == AuditEvent.OWNERSHIP_TRANSFERRED
        assert story.events[-1]["details"]["from_owner"] == "alice"
        assert world.warnings_of(msisdn) == [(1, 7, WarningState.CANCELLED)]

    def test_past_grace_is_refused(self, world: World) -> None:
        """A number past its grace end is due for recycling, not for a transfer."""
        world.clock.moment = as_of_noon(D, world.settings)
        msisdn = world.add_number(D - timedelta(days=91), owner_id="alice")
        refused = unchanged(
            world,
            msisdn,
            lambda: world.four_eyes().request_transfer(
                msisdn,
                REQUESTER,
                to_owner="bob",
                consent_current="SIGNED-ALICE-1",
                consent_new="SIGNED-BOB-1",
            ),
        )
        assert "is past its grace end (2026-11-19)" in refused

    def test_refusals(self, world: World) -> None:
        """One consent only, a blank one, a held number, a pool number, the same owner."""
        msisdn = world.add_number(D, owner_id="alice")

        def moving(current: str, new: str, to: str = "bob", number: str = msisdn) -> object:
            return lambda: world.four_eyes().request_transfer(
                number,
                REQUESTER,
                to_owner=to,
                consent_current=current,
                consent_new=new,
            )

        assert "needs the consent of both owners" in unchanged(world, msisdn, moving("C1", ""))
        assert "needs the consent of both owners" in unchanged(world, msisdn, moving(" ", "C2"))
        assert unchanged(world, msisdn, moving("C1", "C2", to="alice")) == (
            f"{msisdn} already belongs to alice"
        )
        Safeguards.of(world.database, world.settings, world.clock).hold(msisdn, CARE)
        assert "is on hold: it cannot be transferred" in unchanged(
            world, msisdn, moving("C1", "C2")
        )
        pooled = recycled(world, owner="erin")
        assert "is in the resale pool: sell it with" in unchanged(
            world, pooled, moving("C1", "C2", number=pooled)
        )


class TestReinstate:
    """A recycled number goes back to its owner; a sold one only by a forced request."""

    def test_from_the_pool(self, world: World) -> None:
        """Out of the pool, back with alice, a new cycle, with the validity end given."""
        msisdn = recycled(world)
        Safeguards.of(world.database, world.settings, world.clock).reinstate(
            msisdn,
            CARE,
            validity_end=D + timedelta(days=30),
        )
        state = world.number(msisdn)
        assert (state.owner_id, state.in_pool, state.validity_end) == (
            "alice",
            False,
            D + timedelta(days=30),
        )
        assert owners(world, msisdn) == [
            ("alice", OwnershipStart.IMPORT, OwnershipEnd.RECYCLE),
            ("alice", OwnershipStart.REINSTATEMENT, None),
        ]
        assert world.events_of(msisdn)[-1] == AuditEvent.OWNERSHIP_REINSTATED

    def test_sold_number_needs_force(self, world: World) -> None:
        """The seed's case: without --force refused; forced, through a request a second
        person approves, bob's ownership ends, recorded."""
        msisdn = recycled(world)
        Safeguards.of(world.database, world.settings, world.clock).sell(
            msisdn,
            CARE,
            owner="bob",
            language="en",
            validity_end=D + timedelta(days=30),
        )
        message = unchanged(
            world,
            msisdn,
            lambda: Safeguards.of(world.database, world.settings, world.clock).reinstate(
                msisdn, CARE
            ),
        )
        sold_on = world.clock.now().astimezone(world.settings.zone).date()
        assert message == (
            f"{msisdn} was sold to bob on {sold_on}; reinstating takes it from them: add "
            "--force to open a request, which a second person must approve"
        )
        world.reinstate_by_force(msisdn)
        assert world.number(msisdn).owner_id == "alice"
        assert owners(world, msisdn) == [
            ("alice", OwnershipStart.IMPORT, OwnershipEnd.RECYCLE),
            ("bob", OwnershipStart.SALE, OwnershipEnd.REINSTATEMENT),
            ("alice", OwnershipStart.REINSTATEMENT, None),
        ]

    def test_nothing_to_reinstate(self, world: World) -> None:
        """A number that never changed hands is refused."""
        msisdn = world.add_number(D)
        assert "nothing to reinstate" in unchanged(
            world,
            msisdn,
            lambda: world.four_eyes().request_reinstatement(msisdn, CARE),
        )


class TestDatabaseGuards:
    """The rules hold against raw SQL, as a careless employee with database access would try."""

    def _fails(self, world: World, statement: str) -> str:
        with pytest.raises(sa.exc.DBAPIError) as raised, world.database.write() as connection:
            connection.exec_driver_sql(statement)
        return str(raised.value.orig)

    def test_audit_events_are_append_only(self, world: World) -> None:
        """UPDATE and DELETE on audit events are rejected by the database."""
        msisdn = world.add_number(D)
        Safeguards.of(world.database, world.settings, world.clock).hold(msisdn, CARE)
        assert "append-only" in self._fails(world, "UPDATE audit_events SET reason = 'nothing'")
        assert "append-only" in self._fails(world, "DELETE FROM audit_events")
        with world.database.read() as connection:
            assert connection.execute(sa.select(audit_events.c.reason)).scalars().all() == [
                "customer complaint 4711"
            ]

    def test_owner_cannot_change_without_a_permitted_record(self, world: World) -> None:
        """A bare UPDATE of the owner, with or without a made-up ownership, fails."""
        msisdn = world.add_number(D, owner_id="alice")
        assert "owner" in self._fails(
            world, f"UPDATE numbers SET owner_id = 'mallory' WHERE msisdn = '{msisdn}'"
        )
        assert "recycle" in self._fails(
            world,
            f"UPDATE numbers SET owner_id = NULL, language = NULL, validity_end = NULL "
            f"WHERE msisdn = '{msisdn}'",
        )
        assert "transfer_has_both_consents" in self._fails(
            world,
            "INSERT INTO ownerships (msisdn, owner_id, language, started_at, started_on, "
            f"start_cause, started_by) VALUES ('{msisdn}', 'mallory', 'en', '2026-11-20', "
            "'2026-11-20', 'transfer', 'someone')",
        )
        assert "history" in self._fails(world, f"DELETE FROM ownerships WHERE msisdn = '{msisdn}'")
        assert world.number(msisdn).owner_id == "alice"
        assert owners(world, msisdn) == [("alice", OwnershipStart.IMPORT, None)]

    def test_ended_ownership_cannot_be_rewritten(self, world: World) -> None:
        """History stays history: the recycled owner's record cannot be edited."""
        msisdn = recycled(world)
        assert "history" in self._fails(
            world, f"UPDATE ownerships SET owner_id = 'mallory' WHERE msisdn = '{msisdn}'"
        )

    @pytest.mark.postgresql_only
    def test_sale_of_an_owned_number_in_raw_sql(self, world: World) -> None:
        """Even a well-formed 'sale' record does not let an owned number change hands: the
        ownership that was there did not end, and no pool entry was closed."""
        msisdn = world.add_number(D, owner_id="alice")
        message = self._fails(
            world,
            "UPDATE ownerships SET ended_at = now(), ended_on = '2026-11-20', "
            f"end_cause = 'transfer' WHERE msisdn = '{msisdn}'; "
            "INSERT INTO ownerships (msisdn, owner_id, language, started_at, started_on, "
            f"start_cause, started_by) VALUES ('{msisdn}', 'mallory', 'en', now(), "
            "'2026-11-20', 'sale', 'someone'); "
            f"UPDATE numbers SET owner_id = 'mallory' WHERE msisdn = '{msisdn}'",
        )
        assert "the ownership of" in message or "left the pool" in message
        assert world.number(msisdn).owner_id == "alice"
