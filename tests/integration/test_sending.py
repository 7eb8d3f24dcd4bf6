"""The first sender: due warnings reach the gateway once, superseded ones never do, and the
minimum-notice rule counts from the day a warning was really sent."""

from __future__ import annotations

import io
import json
import random
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from jobs.database.schema import warnings
from jobs.sending.dispatcher import Dispatcher
from jobs.vocabulary import AuditEvent, WarningState
from notifier.console import ConsoleGateway
from notifier.gateway import (
    Gateway,
    OperatorGatewayError,
    RecipientGatewayError,
    RetryableGatewayError,
)
from notifier.message import Message
from notifier.testing import InMemoryGateway
from tests.support.world import World, as_of_noon

D = date(2026, 11, 20)


def dispatcher(world: World, gateway: Gateway, **settings: object) -> Dispatcher:
    """A dispatcher that may send at any hour, with repeatable jitter."""
    chosen = world.with_settings(send_window="00:00-24:00", **settings)
    return Dispatcher(chosen.database, chosen.settings, gateway, world.clock, rng=random.Random(1))


class TestConsoleSend:
    """`send --once` through the console gateway."""

    def test_one_json_line_per_sms_and_recorded_as_sent(self, world: World) -> None:
        """to, text, encoding, segments, reference; the outbox then says sent, with the day."""
        english = world.add_number(D - timedelta(days=83), language="en")
        khmer = world.add_number(D - timedelta(days=76), language="km")
        world.fresh_feed(D)
        world.run(D)
        stream = io.StringIO()
        report = dispatcher(world, ConsoleGateway(stream=stream)).drain()
        assert (report.sent, report.failed, report.cancelled) == (2, 0, 0)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["to"] for line in lines] == [english, khmer]
        assert lines[0]["encoding"] == "GSM-7"
        assert lines[0]["segments"] == 1
        assert lines[0]["text"] == (
            f"Your number 0{english[4:]} will be resold to a new customer after "
            "27 November 2026 unless you top up. Top up now, or dial *888#, to keep it."
        )
        assert lines[1]["encoding"] == "UCS-2"
        assert lines[1]["segments"] == 3
        assert f"0{khmer[4:]}" in lines[1]["text"]
        assert "ថ្ងៃទី 4 ខែធ្នូ ឆ្នាំ 2026" in lines[1]["text"]
        assert all(line["reference"].startswith("warning-") for line in lines)
        assert world.warnings_of(english) == [(1, 7, WarningState.SENT)]
        assert AuditEvent.WARNING_SENT in world.events_of(english)
        again = io.StringIO()
        assert dispatcher(world, ConsoleGateway(stream=again)).drain().sent == 0
        assert again.getvalue() == ""

    def test_superseded_warning_is_cancelled_not_sent(self, world: World) -> None:
        """A top-up between queueing and sending ends the cycle: the warning is cancelled."""
        msisdn = world.add_number(D - timedelta(days=83))
        world.fresh_feed(D)
        world.run(D)
        world.import_topup(
            msisdn, as_of_noon(D, world.settings) + timedelta(hours=1), D + timedelta(days=30)
        )
        # The import itself cancels it; make the sender's own re-check do the work instead.
        with world.database.write() as connection:
            connection.execute(
                sa.update(warnings).values(state=WarningState.PENDING, cancel_reason=None)
            )
        gateway = InMemoryGateway()
        report = dispatcher(world, gateway).drain()
        assert (report.sent, report.cancelled) == (0, 1)
        assert gateway.sent == []
        assert world.warnings_of(msisdn) == [(1, 7, WarningState.CANCELLED)]
        assert AuditEvent.WARNING_CANCELLED in world.events_of(msisdn)

    def test_outside_sending_hours_nothing_is_sent(self, world: World) -> None:
        """At 21:00 local with the default 08:00-20:00 window, nothing leaves."""
        world.add_number(D - timedelta(days=83))
        world.fresh_feed(D)
        world.run(D)
        world.clock.moment = datetime.fromisoformat("2026-11-20T21:00:00+07:00")
        gateway = InMemoryGateway()
        sender = Dispatcher(world.database, world.settings, gateway, world.clock)
        report = sender.drain()
        assert report.outside_window
        assert gateway.sent == []

    def test_limit(self, world: World) -> None:
        """--limit N sends at most N."""
        for _ in range(5):
            world.add_number(D - timedelta(days=83))
        world.fresh_feed(D)
        world.run(D)
        gateway = InMemoryGateway()
        assert dispatcher(world, gateway).drain(limit=3).sent == 3
        assert len(gateway.sent) == 3


class TestGatewayErrors:
    """Passing errors retry later; permanent ones fail at once with the gateway's code."""

    def test_retryable_then_permanent(self, world: World) -> None:
        """A 503 puts the warning back with a later attempt; a 21211 fails it for good."""
        first = world.add_number(D - timedelta(days=83))
        second = world.add_number(D - timedelta(days=83))
        world.fresh_feed(D)
        world.run(D)
        gateway = InMemoryGateway()
        gateway.fail_next(RetryableGatewayError("503"), RecipientGatewayError("21211"))
        report = dispatcher(world, gateway).drain()
        assert (report.sent, report.retried, report.failed) == (0, 1, 1)
        with world.database.read() as connection:
            rows = {
                row.msisdn: row
                for row in connection.execute(
                    sa.select(
                        warnings.c.msisdn,
                        warnings.c.state,
                        warnings.c.error_code,
                        warnings.c.next_attempt_at,
                        warnings.c.final_on,
                    )
                )
            }
        # Warnings go out oldest first; which number's warning that is, the database decides.
        retried, failed = sorted(rows.values(), key=lambda row: row.state, reverse=True)
        assert {retried.msisdn, failed.msisdn} == {first, second}
        assert (retried.state, retried.error_code) == (WarningState.PENDING, "503")
        assert retried.next_attempt_at > world.clock.now() + timedelta(seconds=14)
        assert (failed.state, failed.error_code) == (WarningState.FAILED, "21211")
        assert failed.final_on == world.clock.now().astimezone(world.settings.zone).date()
        # Not due yet: nothing more now; due after the backoff: sent.
        assert dispatcher(world, gateway).drain().sent == 0
        world.clock.advance(timedelta(minutes=2))
        assert dispatcher(world, gateway).drain().sent == 1

    def test_blocked_after_max_attempts(self, world: World) -> None:
        """A gateway that fails the message max_attempts times leaves it blocked (no notice:
        the subscriber did nothing), and it goes out once the gateway takes it."""
        msisdn = world.add_number(D - timedelta(days=83))
        world.fresh_feed(D)
        world.run(D)
        gateway = InMemoryGateway()
        gateway.fail_next(*(RetryableGatewayError("429") for _ in range(4)))
        reports = []
        for _ in range(4):
            reports.append(dispatcher(world, gateway, max_attempts=3).drain())
            world.clock.advance(timedelta(hours=2))
        assert [report.retried for report in reports] == [1, 1, 0, 0]
        assert [report.blocked for report in reports] == [0, 0, 1, 1]
        assert world.warnings_of(msisdn) == [(1, 7, WarningState.BLOCKED)]
        assert world.events_of(msisdn)[-1] == AuditEvent.WARNING_BLOCKED
        assert dispatcher(world, gateway, max_attempts=3).drain().sent == 1
        assert world.warnings_of(msisdn) == [(1, 7, WarningState.SENT)]


class TestOperatorSide:
    """A failure on the operator's side blocks the warning, stops the drain, and is no notice."""

    @pytest.mark.parametrize(
        "error",
        [
            OperatorGatewayError("20003", "Authenticate"),
            OperatorGatewayError("connection", "refused"),
            OSError("disk full"),  # an adapter breaking its contract
        ],
        ids=["credentials", "connection", "unexpected"],
    )
    def test_drain_stops_at_the_first_one(self, world: World, error: Exception) -> None:
        """Twenty due warnings, one request: the rest are released untried and stay pending;
        the one tried is blocked, its attempt uncounted."""
        for _ in range(20):
            world.add_number(D - timedelta(days=83))
        world.fresh_feed(D)
        world.run(D)

        class Broken(InMemoryGateway):
            async def send(self, message: Message) -> str:
                self.attempts = getattr(self, "attempts", 0) + 1
                raise error

        gateway = Broken()
        report = dispatcher(world, gateway, send_concurrency=1).drain()
        assert gateway.attempts == 1
        assert (report.sent, report.failed, report.blocked, report.retried) == (0, 0, 1, 0)
        assert report.gateway_problem is not None
        assert world.warning_states() == {"blocked": 1, "pending": 19}
        with world.database.read() as connection:
            attempts = connection.execute(
                sa.select(warnings.c.attempts).where(warnings.c.state == WarningState.BLOCKED)
            ).scalar_one()
        assert attempts == 0

    def test_blocked_is_no_notice_and_goes_out_once_repaired(self, world: World) -> None:
        """Blocked on D, the number is deferred on D+8; sent once the gateway works, it is
        recycled seven days after that."""
        world.clock.moment = as_of_noon(D, world.settings)
        msisdn = world.add_number(D - timedelta(days=95))
        world.fresh_feed(D + timedelta(days=16))
        assert world.run(D, allow_mass_recycle=True).warnings_queued == {0: 1}
        broken = InMemoryGateway()
        broken.fail_next(OperatorGatewayError("20003", "Authenticate"))
        assert dispatcher(world, broken).drain().blocked == 1
        later = world.run(D + timedelta(days=8), allow_mass_recycle=True)
        assert (later.recycled, later.deferred) == (0, 1)
        assert not world.number(msisdn).in_pool
        assert dispatcher(world, InMemoryGateway()).drain().sent == 1
        assert world.run(D + timedelta(days=14), allow_mass_recycle=True).recycled == 0
        assert world.run(D + timedelta(days=15), allow_mass_recycle=True).recycled == 1


class TestMinimumNoticeEndToEnd:
    """Queue, send, and recycle only once the notice is old enough."""

    def test_recycled_seven_days_after_the_final_notice_was_sent(self, world: World) -> None:
        """A number past grace with no warning: final notice on D, sent on D, recycled on D+7,
        not on D+6."""
        world.clock.moment = as_of_noon(D, world.settings)
        msisdn = world.add_number(D - timedelta(days=95))
        world.fresh_feed(D + timedelta(days=7))
        first = world.run(D, allow_mass_recycle=True)
        assert (first.warnings_queued, first.deferred) == ({0: 1}, 1)
        assert dispatcher(world, InMemoryGateway()).drain().sent == 1
        assert world.run(D + timedelta(days=6), allow_mass_recycle=True).recycled == 0
        assert world.run(D + timedelta(days=7), allow_mass_recycle=True).recycled == 1
        assert world.number(msisdn).in_pool
