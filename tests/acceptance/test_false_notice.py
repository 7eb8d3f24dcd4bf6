"""A warning that never left the operator counts as no notice at all (issue 8).

End to end, as an operator meets it: the night queues a final notice, `recycler send` fails on
the operator's own side (a wrong Twilio token, a gateway port nobody listens on, a console outbox
in a folder that does not exist), and a week later the number must still be deferred, never
recycled. `send` says so with a non-zero exit, `status` with an unhealthy check, and once the
cause is fixed the held warning goes out on the next `send` by itself.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.vocabulary import WarningState
from tests.support.cli import Command, environment, recycler
from tests.support.twilio_server import ACCOUNT_SID, AUTH_TOKEN, TwilioTestServer
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")
FAULTS = ("wrong_token", "closed_port", "unwritable_outbox")

pytestmark = pytest.mark.needs_faketime


def today() -> date:
    return datetime.now(ZONE).date()


def free_port() -> int:
    """A port nothing listens on (taken from the system, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[TwilioTestServer]:
    with TwilioTestServer() as running:
        yield running


def sending_environment(
    world: World, server: TwilioTestServer, fault: str, folder: Path, *, repaired: bool
) -> dict[str, str]:
    """Settings for a sender with the operator-side fault, or with the fault repaired."""
    always = {"send_window": "00:00-24:00", "send_rate": "0"}
    if fault == "unwritable_outbox":
        outbox = folder / "outbox.jsonl" if repaired else folder / "missing" / "outbox.jsonl"
        return environment(world.url, console_outbox_path=str(outbox), **always)
    closed = fault == "closed_port" and not repaired
    env = environment(
        world.url,
        gateway="twilio",
        twilio_from="+15005550006",
        twilio_base_url=f"http://127.0.0.1:{free_port()}" if closed else server.base_url,
        **always,
    )
    env["TWILIO_ACCOUNT_SID"] = ACCOUNT_SID
    wrong = fault == "wrong_token" and not repaired
    env["TWILIO_AUTH_TOKEN"] = "a-wrong-token-" + "y" * 18 if wrong else AUTH_TOKEN
    return env


def later(days: int, *args: str, env: dict[str, str]) -> Command:
    """`recycler ARGS` on a clock `days` days ahead (libfaketime), as a later night would be."""
    faketime = shutil.which("faketime")
    assert faketime is not None, "the faketime package is needed (apt-get install faketime)"
    completed = subprocess.run(
        [faketime, "-f", f"+{days}d", sys.executable, "-m", "jobs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Command(completed)


@pytest.mark.parametrize("fault", FAULTS)
class TestOperatorSideFailure:
    """A wrong token, a closed port, an unwritable outbox: no notice, and everyone is told."""

    def test_number_is_deferred_send_fails_status_unhealthy(
        self, world: World, server: TwilioTestServer, tmp_path: Path, fault: str
    ) -> None:
        """The whole story: queued, not sent, send exit 1, status unhealthy, a week later the
        number is deferred; fixed, the warning goes out and the number gets its notice."""
        msisdn = world.add_number(today() - timedelta(days=91))  # past grace, never warned
        world.fresh_feed(today() + timedelta(days=10))
        plain = environment(world.url)

        night = recycler("run", "--json", env=plain)
        assert night.code == 0, night
        assert night.json()["warnings_queued"] == {"0": 1}

        broken = sending_environment(world, server, fault, tmp_path, repaired=False)
        sent = recycler("send", "--once", "--json", env=broken)
        assert sent.code == 1, sent
        summary = json.loads(sent.stdout or sent.stderr.splitlines()[-1])
        assert (summary["sent"], summary["failed"], summary["blocked"]) == (0, 0, 1)
        assert "Traceback" not in sent.stderr
        events = [json.loads(line) for line in sent.stderr.splitlines() if line.startswith("{")]
        unusable = [event for event in events if event.get("event") == "send.gateway_unusable"]
        assert len(unusable) == 1, sent.stderr
        assert world.warnings_of(msisdn) == [(1, 0, WarningState.BLOCKED)]

        status = recycler("status", "--json", env=plain)
        assert status.code == 1, status
        check = status.json()["checks"]["gateway"]
        assert check["ok"] is False
        assert "1 warning" in check["problem"]

        week_later = later(8, "run", "--json", env=plain)
        assert week_later.code == 0, week_later
        outcome = week_later.json()
        assert (outcome["recycled"], outcome["deferred"]) == (0, 1)
        assert world.number(msisdn).owner_id == "owner-1"
        assert world.warnings_of(msisdn) == [(1, 0, WarningState.BLOCKED)]

        repaired = sending_environment(world, server, fault, tmp_path, repaired=True)
        again = recycler("send", "--once", "--json", env=repaired)
        assert again.code == 0, again
        assert world.warnings_of(msisdn) == [(1, 0, WarningState.SENT)]
        healthy = recycler("status", "--json", env=plain)
        assert healthy.json()["checks"]["gateway"]["ok"] is True
