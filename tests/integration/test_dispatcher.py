"""The dispatcher against the Twilio test server: failures, retries, re-checks, rate, stopping."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from jobs.database.schema import numbers
from jobs.sending.dispatcher import Dispatcher, SendReport
from jobs.vocabulary import AuditEvent, WarningState
from notifier.twilio_gateway import TwilioConfig, TwilioGateway
from tests.support.twilio_server import ACCOUNT_SID, AUTH_TOKEN, Faults, TwilioTestServer
from tests.support.world import World

D = date(2026, 11, 20)


@pytest.fixture
def server() -> Iterator[TwilioTestServer]:
    with TwilioTestServer() as running:
        yield running


def twilio(server: TwilioTestServer, timeout: float = 1.0) -> TwilioGateway:
    return TwilioGateway(
        TwilioConfig(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            from_number="+15005550006",
            base_url=server.base_url,
            timeout_seconds=timeout,
        )
    )


def dispatcher(world: World, server: TwilioTestServer, **settings: object) -> Dispatcher:
    chosen = world.with_settings(
        **{"send_window": "00:00-24:00", "send_rate": 0, "send_concurrency": 8, **settings}
    )
    return Dispatcher(
        chosen.database, chosen.settings, twilio(server), world.clock, rng=random.Random(7)
    )


def drain(sender: Dispatcher) -> SendReport:
    async def once() -> SendReport:
        try:
            return await sender.run(once=True)
        finally:
            await sender.gateway.close()

    return asyncio.run(once())


class TestUnreliableGateway:
    """With 30% of requests failing, every warning is still sent exactly once."""

    def test_thirty_percent_failures(self, world: World, server: TwilioTestServer) -> None:
        """500, 503, 429 and timeouts mixed; drains repeated as backoff comes due."""
        queued = world.queue_warnings(120)
        server.set_faults(Faults(failure_rate=0.3, timeout_seconds=1.5, seed=3))
        rounds = 0
        while world.warning_states().get("pending", 0) and rounds < 20:
            drain(dispatcher(world, server, max_attempts=20))
            world.clock.advance(timedelta(hours=2))
            rounds += 1
        assert world.warning_states() == {"sent": 120}
        counts = server.counts()
        assert sorted(to for to, _ in counts) == sorted(queued)
        assert set(counts.values()) == {1}
        assert server.requests > 120  # the failures really happened

    def test_permanent_refusal_fails_once_with_the_code(
        self, world: World, server: TwilioTestServer
    ) -> None:
        """21610 (unsubscribed): failed at the first attempt, never retried."""
        queued = world.queue_warnings(3)
        server.set_faults(Faults(refuse={queued[1]: 21610}))
        report = drain(dispatcher(world, server))
        assert (report.sent, report.failed, report.retried) == (2, 1, 0)
        assert world.warning_states() == {"sent": 2, "failed": 1}
        assert world.events_of(queued[1])[-1] == AuditEvent.WARNING_FAILED


class TestRecheckBeforeSending:
    """A warning whose cycle ended between queueing and sending is cancelled, not sent."""

    def test_hold(self, world: World, server: TwilioTestServer) -> None:
        """A number put on hold after its warning was queued gets nothing."""
        held, other = world.queue_warnings(2)
        with world.database.write() as connection:
            connection.execute(
                sa.update(numbers).where(numbers.c.msisdn == held).values(on_hold=True)
            )
        report = drain(dispatcher(world, server))
        assert (report.sent, report.cancelled) == (1, 1)
        assert [to for to, _ in server.counts()] == [other]

    def test_recycle(self, world: World, server: TwilioTestServer) -> None:
        """The run that recycles a number cancels its pending warning; nothing goes out."""
        msisdn = world.add_number(D - timedelta(days=93))
        world.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
        world.add_warning(msisdn, 1, state=WarningState.PENDING)
        world.fresh_feed(D)
        assert world.run(D, allow_mass_recycle=True).recycled == 1
        report = drain(dispatcher(world, server))
        assert report.sent == 0
        assert server.accepted == []

    def test_topup(self, world: World, server: TwilioTestServer) -> None:
        """A new cycle (top-up) makes the old cycle's warning stale."""
        (msisdn,) = world.queue_warnings(1)
        with world.database.write() as connection:
            connection.execute(sa.update(numbers).where(numbers.c.msisdn == msisdn).values(cycle=2))
        report = drain(dispatcher(world, server))
        assert (report.sent, report.cancelled) == (0, 1)
        assert server.accepted == []


class TestRobustness:
    """A drain does not stop early, and an adapter's bug does not lose a message."""

    def test_batches_entirely_superseded_do_not_end_the_drain(
        self, world: World, server: TwilioTestServer
    ) -> None:
        """The first two batches are all stale; the third still goes out."""
        queued = world.queue_warnings(30)
        with world.database.write() as connection:
            connection.execute(
                sa.update(numbers).where(numbers.c.msisdn.in_(queued[:20])).values(cycle=2)
            )
        chosen = world.with_settings(send_window="00:00-24:00", send_rate=0)
        sender = Dispatcher(
            chosen.database, chosen.settings, twilio(server), world.clock, batch_size=10
        )
        report = drain(sender)
        assert (report.sent, report.cancelled) == (10, 20)
        assert sorted(to for to, _ in server.counts()) == sorted(queued[20:])

    def test_unexpected_adapter_error_blocks(self, world: World) -> None:
        """A gateway that raises something other than a GatewayError breaks its contract: the
        warning is blocked (never notice), the drain stops, and the fault is reported."""

        class Broken:
            name = "broken"

            async def send(self, message: object) -> str:
                raise ValueError("unparseable answer")

            async def close(self) -> None:
                return None

        (msisdn,) = world.queue_warnings(1)
        chosen = world.with_settings(send_window="00:00-24:00")
        report = Dispatcher(chosen.database, chosen.settings, Broken(), world.clock).drain()
        assert (report.sent, report.retried, report.blocked) == (0, 0, 1)
        assert report.gateway_problem == "unexpected: ValueError: unparseable answer"
        assert world.warnings_of(msisdn) == [(1, 30, WarningState.BLOCKED)]


class TestPace:
    """The rate limit, concurrency, and stopping."""

    def test_rate_limit_holds_within_ten_percent(
        self, world: World, server: TwilioTestServer
    ) -> None:
        """At send_rate 20, any 5-second window holds 100 messages, give or take 10%."""
        world.queue_warnings(160)
        sender = dispatcher(world, server, send_rate=20, send_concurrency=16)
        drain(sender)
        moments = sorted(message.at for message in server.accepted)
        assert len(moments) == 160
        busiest = max(
            sum(1 for moment in moments if start <= moment < start + 5.0) for start in moments
        )
        assert 90 <= busiest <= 110, busiest

    def test_concurrency_keeps_requests_in_flight(
        self, world: World, server: TwilioTestServer
    ) -> None:
        """With 50 ms latency and 8 in flight, 80 messages take about half a second, not four."""
        world.queue_warnings(80)
        server.set_faults(Faults(latency=0.05))
        started = time.monotonic()
        report = drain(dispatcher(world, server, send_concurrency=8))
        assert report.sent == 80
        assert time.monotonic() - started < 2.5

    def test_stop_releases_what_was_not_sent(self, world: World, server: TwilioTestServer) -> None:
        """Stopped mid-drain: what went out is recorded sent, the rest is pending again."""
        world.queue_warnings(60)
        server.set_faults(Faults(latency=0.05))
        sender = dispatcher(world, server, send_rate=20, send_concurrency=2)

        async def stopped_early() -> SendReport:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(1.0, stop.set)
            try:
                return await sender.run(once=False, stop=stop)
            finally:
                await sender.gateway.close()

        report = asyncio.run(stopped_early())
        sent = len(server.accepted)
        assert 5 <= sent < 60
        assert report.sent == sent
        assert 0 < report.released <= 60 - sent  # claimed, never sent, handed back
        assert world.warning_states() == {"sent": sent, "pending": 60 - sent}
