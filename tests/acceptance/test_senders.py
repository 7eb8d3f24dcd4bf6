"""Real sender processes against the Twilio test server: several at once, one killed."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.support.cli import Command, Running, recycler, start, wait_until
from tests.support.twilio_server import Faults, TwilioTestServer, sender_environment
from tests.support.world import World


@pytest.fixture
def server() -> Iterator[TwilioTestServer]:
    with TwilioTestServer() as running:
        yield running


@pytest.mark.postgresql_only
class TestSeveralSenders:
    """On PostgreSQL any number of senders share the outbox."""

    def test_two_senders_never_send_the_same_warning_twice(
        self, world: World, server: TwilioTestServer
    ) -> None:
        """Both work (the server sees requests from both), and each warning goes out once."""
        queued = world.queue_warnings(400)
        server.set_faults(Faults(latency=0.01))
        env = sender_environment(world.url, server, send_concurrency="8")
        first = start("send", "--once", "--json", env=env)
        second = start("send", "--once", "--json", env=env)
        results = [first.finish(), second.finish()]
        assert all(result.code == 0 for result in results), results
        sent = [result.json()["sent"] for result in results]
        assert sum(sent) == 400
        assert min(sent) > 0, f"one sender did all the work: {sent}"
        counts = server.counts()
        assert sorted(to for to, _ in counts) == sorted(queued)
        assert set(counts.values()) == {1}
        assert world.warning_states() == {"sent": 400}

    def test_killed_sender_loses_nothing(self, world: World, server: TwilioTestServer) -> None:
        """SIGKILL mid-batch; once its lease runs out another sender finishes. Nothing is lost,
        and no more are sent twice than the killed sender had in flight."""
        queued = world.queue_warnings(300)
        server.set_faults(Faults(latency=0.05))
        concurrency = 8
        env = sender_environment(
            world.url, server, send_concurrency=str(concurrency), lease_seconds="3"
        )
        victim = start("send", "--once", env=env)
        wait_until(lambda: len(server.accepted) >= 60)
        victim.process.send_signal(signal.SIGKILL)
        killed = victim.finish()
        assert killed.code == -signal.SIGKILL
        sent_before = len(server.accepted)
        assert sent_before < 300
        assert world.warning_states().get("sending", 0) > 0  # its claims are still held

        early = recycler("send", "--once", "--json", env=env)
        assert early.code == 0, early
        time.sleep(3.5)  # the lease runs out
        late = recycler("send", "--once", "--json", env=env)
        assert late.code == 0, late

        counts = server.counts()
        assert sorted(to for to, _ in counts) == sorted(queued), "a warning was never sent"
        duplicates = sum(count - 1 for count in counts.values())
        assert duplicates <= concurrency
        assert world.warning_states() == {"sent": 300}


class TestStopping:
    """A sender without --once stops cleanly on SIGTERM and SIGINT."""

    @pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
    def test_stops_on_signal(
        self, world: World, server: TwilioTestServer, stop_signal: signal.Signals
    ) -> None:
        """Exit 0; what was sent is recorded sent, the rest is pending again for others."""
        world.queue_warnings(200)
        server.set_faults(Faults(latency=0.02))
        env = sender_environment(world.url, server, send_rate="40", send_concurrency="4")
        running: Running = start("send", "--json", env=env)
        wait_until(lambda: len(server.accepted) >= 20)
        running.process.send_signal(stop_signal)
        finished: Command = running.finish(timeout=30)
        assert finished.code == 0, finished
        sent = len(server.accepted)
        assert sent < 200
        summary = finished.json()
        assert summary["sent"] == sent
        assert world.warning_states() == {"sent": sent, "pending": 200 - sent}

    @pytest.mark.sqlite_only
    def test_second_sender_on_sqlite_is_refused(
        self, world: World, server: TwilioTestServer
    ) -> None:
        """SQLite allows one sender: a second one exits 4 with a sentence (PostgreSQL: both run)."""
        world.queue_warnings(100)
        server.set_faults(Faults(latency=0.05))
        env = sender_environment(world.url, server, send_rate="20", send_concurrency="2")
        first = start("send", "--once", env=env)
        wait_until(lambda: len(server.accepted) >= 5)
        second = recycler("send", "--once", env=env)
        first.finish()
        assert second.code == 4, second
        assert "another sender is already draining this SQLite database" in second.stderr
