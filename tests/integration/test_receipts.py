"""Delivery receipts on both databases: kept by the API's side, applied by the senders, each
message moved once from sent to delivered or undelivered and never back; the minimum-notice
rule counts delivered and undelivered exactly as it counts sent."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from jobs.clock import local_date
from jobs.database.schema import delivery_receipts, warnings
from jobs.sending import receipts as receipts_module
from jobs.sending.dispatcher import Dispatcher
from jobs.sending.receipts import deliveries_by_night, keep_receipt
from jobs.vocabulary import AuditEvent, WarningState
from notifier.receipts import Receipt, kannel_receipt, twilio_receipt
from notifier.testing import InMemoryGateway
from tests.support.world import World, as_of_noon

D = date(2026, 11, 20)


def drain(world: World, gateway: InMemoryGateway | None = None) -> int:
    """One `send --once`; returns how many warnings receipts moved."""
    chosen = world.with_settings(send_window="00:00-24:00")
    dispatcher = Dispatcher(
        chosen.database,
        chosen.settings,
        gateway or InMemoryGateway(),
        world.clock,
        rng=random.Random(1),
    )
    return dispatcher.drain().receipts


def keep(world: World, message_id: str, receipt: Receipt, gateway: str = "twilio") -> None:
    """What the API does with a signed receipt."""
    now = world.clock.now()
    with world.database.write() as connection:
        keep_receipt(
            connection,
            gateway=gateway,
            message_id=message_id,
            receipt=receipt,
            now=now,
            today=local_date(now, world.settings.zone),
        )


def receipt_columns(world: World, msisdn: str) -> tuple[object, ...]:
    with world.database.read() as connection:
        row = connection.execute(
            sa.select(
                warnings.c.state,
                warnings.c.final_on,
                warnings.c.receipt_on,
                warnings.c.receipt_code,
                warnings.c.gateway_message_id,
            ).where(warnings.c.msisdn == msisdn)
        ).one()
    return tuple(row)


def message_of(world: World, msisdn: str) -> str:
    """The gateway's id of the number's warning."""
    message_id = receipt_columns(world, msisdn)[4]
    assert isinstance(message_id, str)
    return message_id


def two_sent(world: World) -> tuple[str, str]:
    """Two numbers warned on D and sent on D (in whichever order the workers took them)."""
    world.clock.moment = as_of_noon(D, world.settings)
    first = world.add_number(D - timedelta(days=83))
    second = world.add_number(D - timedelta(days=83))
    world.fresh_feed(D)
    world.run(D)
    gateway = InMemoryGateway()
    drain(world, gateway)
    assert len(gateway.sent) == 2
    return first, second


class TestApplied:
    def test_delivered_and_undelivered_with_the_network_code(self, world: World) -> None:
        """A Twilio "delivered" and a Kannel failure (SMPP err:001) move their warnings; the
        date the notice counts from stays the day it was accepted."""
        first, second = two_sent(world)
        world.clock.moment += timedelta(days=1)
        keep(world, message_of(world, first), twilio_receipt("delivered", None))
        keep(
            world,
            message_of(world, second),
            kannel_receipt(2, "id:77 sub:001 dlvrd:000 stat:UNDELIV err:001 text:x"),
            gateway="kannel",
        )
        assert receipt_columns(world, first)[0] == WarningState.SENT
        assert drain(world) == 2
        assert receipt_columns(world, first)[:4] == (
            WarningState.DELIVERED,
            D,
            D + timedelta(days=1),
            None,
        )
        assert receipt_columns(world, second)[:4] == (
            WarningState.UNDELIVERED,
            D,
            D + timedelta(days=1),
            "001",
        )
        assert world.events_of(first).count(AuditEvent.WARNING_DELIVERED) == 1
        assert world.events_of(second).count(AuditEvent.WARNING_UNDELIVERED) == 1

    def test_duplicates_and_out_of_order_change_nothing(self, world: World) -> None:
        """The first final receipt wins: a later undelivered, a repeated delivered and a step
        in between ("sent") leave the warning delivered, with one audit event."""
        first, _ = two_sent(world)
        message = message_of(world, first)
        keep(world, message, twilio_receipt("delivered", None))
        assert drain(world) == 1
        keep(world, message, twilio_receipt("undelivered", "30005"))
        keep(world, message, twilio_receipt("delivered", None))
        keep(world, message, twilio_receipt("sent", None))
        assert drain(world) == 0
        assert receipt_columns(world, first)[:4] == (WarningState.DELIVERED, D, D, None)
        assert world.events_of(first).count(AuditEvent.WARNING_DELIVERED) == 1
        assert AuditEvent.WARNING_UNDELIVERED not in world.events_of(first)
        with world.database.read() as connection:
            kept = connection.execute(
                sa.select(delivery_receipts.c.status, delivery_receipts.c.applied_at.is_not(None))
                .where(delivery_receipts.c.message_id == message)
                .order_by(delivery_receipts.c.id)
            ).all()
        # The step in between is not kept; every final one is, and every one is dealt with.
        assert [tuple(row) for row in kept] == [
            ("delivered", True),
            ("undelivered", True),
            ("delivered", True),
        ]

    def test_out_of_order_before_either_is_applied(self, world: World) -> None:
        """Two final receipts waiting together: the one that came first wins."""
        _, second = two_sent(world)
        keep(world, message_of(world, second), twilio_receipt("failed", "30008"))
        keep(world, message_of(world, second), twilio_receipt("delivered", None))
        assert drain(world) == 1
        assert receipt_columns(world, second)[0] == WarningState.UNDELIVERED
        assert receipt_columns(world, second)[3] == "30008"

    def test_a_receipt_that_beats_the_sender(self, world: World) -> None:
        """A receipt kept before its message is recorded as sent waits, and is applied by the
        drain that sends it."""
        world.clock.moment = as_of_noon(D, world.settings)
        msisdn = world.add_number(D - timedelta(days=83))
        world.fresh_feed(D)
        world.run(D)
        keep(world, "known-1", twilio_receipt("delivered", None))
        assert drain(world, InMemoryGateway(id_prefix="known")) == 1
        assert receipt_columns(world, msisdn)[0] == WarningState.DELIVERED

    def test_unknown_message_set_aside_after_an_hour(self, world: World) -> None:
        """A receipt for an id recycler never sent moves nothing; it waits an hour (a sender
        may be about to record it), then is set aside."""
        first, second = two_sent(world)
        keep(world, "SM-never-sent", twilio_receipt("delivered", None))
        assert drain(world) == 0
        assert self.waiting(world) == 1
        world.clock.moment += timedelta(hours=1, seconds=1)
        assert drain(world) == 0
        assert self.waiting(world) == 0
        assert receipt_columns(world, first)[0] == WarningState.SENT
        assert receipt_columns(world, second)[0] == WarningState.SENT

    @pytest.mark.timeout(60)
    def test_receipts_that_must_wait_do_not_hold_the_sender(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """More waiting receipts than a batch holds, none of which can be applied yet (ids of
        no message, younger than an hour), and a sent message's receipt behind them: the drain
        goes through them batch after batch, applies the one it can, and ends."""
        first, _ = two_sent(world)
        monkeypatch.setattr(receipts_module, "_BATCH", 5)
        for index in range(12):
            keep(world, f"SM-not-yet-{index}", twilio_receipt("delivered", None))
        keep(world, message_of(world, first), twilio_receipt("delivered", None))
        assert drain(world) == 1
        assert receipt_columns(world, first)[0] == WarningState.DELIVERED
        assert self.waiting(world) == 12

    @staticmethod
    def waiting(world: World) -> int:
        with world.database.read() as connection:
            return connection.execute(
                sa.select(sa.func.count()).where(delivery_receipts.c.applied_at.is_(None))
            ).scalar_one()


class TestDeliveryFigures:
    def test_per_night_and_stage_with_the_receipt_wait(self, world: World) -> None:
        """Two sent on D, one delivered: the other awaits its receipt for 72 hours after it
        was accepted, then counts as no receipt."""
        first, _ = two_sent(world)
        keep(world, message_of(world, first), twilio_receipt("delivered", None))
        drain(world)
        accepted_at = as_of_noon(D, world.settings)

        def figures(hours: float) -> list[tuple[object, ...]]:
            with world.database.read() as connection:
                rows = deliveries_by_night(
                    connection,
                    now=accepted_at + timedelta(hours=hours),
                    wait=timedelta(hours=72),
                )
            return [
                (row.night, row.stage, row.accepted, row.delivered, row.undelivered,
                 row.no_receipt, row.awaiting_receipt, row.failed, row.delivered_share)
                for row in rows
            ]  # fmt: skip

        assert figures(71) == [(D, 7, 2, 1, 0, 0, 1, 0, 1.0)]
        assert figures(73) == [(D, 7, 2, 1, 0, 1, 0, 0, 0.5)]


class TestMinimumNotice:
    @pytest.mark.parametrize(
        "receipt",
        [None, twilio_receipt("delivered", None), twilio_receipt("undelivered", "30003")],
        ids=["no-receipt", "delivered", "undelivered"],
    )
    def test_recycled_seven_days_after_acceptance_whatever_the_receipt(
        self, world: World, receipt: Receipt | None
    ) -> None:
        """Final notice queued and sent on D, its receipt on D+3: not recycled on D+6,
        recycled on D+7, as with no receipt at all."""
        world.clock.moment = as_of_noon(D, world.settings)
        msisdn = world.add_number(D - timedelta(days=95))
        world.fresh_feed(D + timedelta(days=7))
        assert world.run(D, allow_mass_recycle=True).warnings_queued == {0: 1}
        drain(world)
        world.clock.moment += timedelta(days=3)
        if receipt is not None:
            keep(world, message_of(world, msisdn), receipt)
            assert drain(world) == 1
        assert world.run(D + timedelta(days=6), allow_mass_recycle=True).recycled == 0
        assert world.run(D + timedelta(days=7), allow_mass_recycle=True).recycled == 1
        assert world.number(msisdn).in_pool
