"""Delivery receipts end to end, as an operator runs them: `recycler send` through Twilio (the
Twilio test server posts signed status callbacks, as Twilio does) or through a real Kannel (Debian's
bearerbox and smsbox, Kannel's fake SMSC), `recycler api` receiving the receipts, and the next
`recycler send` applying them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from jobs.api.receipts import KANNEL_PATH, TWILIO_PATH, ReceiptSecrets
from jobs.database.schema import delivery_receipts, warnings
from jobs.vocabulary import AuditEvent, WarningState
from notifier.kannel_gateway import receipt_signature
from tests.support.api import ApiServer, free_port, running_api
from tests.support.cli import environment, recycler
from tests.support.kannel import PASSWORD, USERNAME, Kannel, kannel_missing
from tests.support.twilio_server import AUTH_TOKEN, Faults, TwilioTestServer, sender_environment
from tests.support.world import World, as_of_noon

D = date(2026, 11, 20)
RECEIPT_SECRET = "kannel-receipt-secret-for-tests"


def warned(world: World, languages: tuple[str, ...]) -> list[str]:
    """Numbers whose 7-day warning the night of D queued, one per language given."""
    world.clock.moment = as_of_noon(D, world.settings)
    numbers = [
        world.add_number(D - timedelta(days=83), language=language) for language in languages
    ]
    world.fresh_feed(D)
    assert world.run(D).warnings_queued == {7: len(numbers)}
    return numbers


def outcomes(world: World) -> dict[str, tuple[str, str | None]]:
    """Each number's warning: state and receipt code."""
    with world.database.read() as connection:
        rows = connection.execute(
            sa.select(warnings.c.msisdn, warnings.c.state, warnings.c.receipt_code)
        ).all()
    return {row.msisdn: (row.state, row.receipt_code) for row in rows}


def kept_receipts(world: World) -> int:
    with world.database.read() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(delivery_receipts)
        ).scalar_one()


def wait_for_receipts(world: World, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while kept_receipts(world) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{kept_receipts(world)} receipts of {count} arrived")
        time.sleep(0.05)


# Twilio ----------------------------------------------------------------------------------------


@pytest.fixture
def twilio() -> Iterator[TwilioTestServer]:
    with TwilioTestServer() as running:
        yield running


@pytest.fixture
def api_port() -> int:
    return free_port()


@pytest.fixture
def callback_url(api_port: int) -> str:
    return f"http://127.0.0.1:{api_port}{TWILIO_PATH}"


@pytest.fixture
def api(world: World, tmp_path: Path, api_port: int, callback_url: str) -> Iterator[ApiServer]:
    with running_api(
        world,
        tmp_path,
        port=api_port,
        receipt_secrets=ReceiptSecrets(AUTH_TOKEN, RECEIPT_SECRET),
        twilio_status_callback_url=callback_url,
    ) as server:
        yield server


class TestTwilioStatusCallbacks:
    def test_delivered_and_undelivered(
        self, world: World, twilio: TwilioTestServer, api: ApiServer, callback_url: str
    ) -> None:
        """Three warnings sent; Twilio reports two delivered and one undelivered (30003,
        handset unreachable); the next send records exactly that."""
        first, second, third = warned(world, ("en", "km", "en"))
        twilio.set_faults(Faults(undeliverable={third: 30003}))
        env = sender_environment(world.url, twilio, twilio_status_callback_url=callback_url)
        sent = recycler("send", "--once", "--json", env=env)
        assert sent.code == 0, sent
        assert sent.json()["sent"] == 3
        assert twilio.callbacks_done() == [200] * 6
        applied = recycler("send", "--once", "--json", env=env)
        assert applied.code == 0, applied
        assert applied.json()["sent"] == 0
        # Applied by the first send if they came before it finished, else by the second.
        assert sent.json()["receipts"] + applied.json()["receipts"] == 3
        assert outcomes(world) == {
            first: (WarningState.DELIVERED, None),
            second: (WarningState.DELIVERED, None),
            third: (WarningState.UNDELIVERED, "30003"),
        }
        assert world.events_of(third).count(AuditEvent.WARNING_UNDELIVERED) == 1
        status = recycler("status", "--json", env=env).json()
        assert status["outbox"]["delivered"] == 2
        assert status["outbox"]["undelivered"] == 1
        assert status["deliveries"] == [
            {
                "night": D.isoformat(),
                "run_id": 1,
                "stage": 7,
                "accepted": 3,
                "delivered": 2,
                "undelivered": 1,
                "no_receipt": 0,
                "awaiting_receipt": 0,
                "failed": 0,
                "delivered_share": 0.6667,
            }
        ]

    def test_out_of_order_and_repeated(
        self, world: World, twilio: TwilioTestServer, api: ApiServer, callback_url: str
    ) -> None:
        """Every callback twice, the final status before "sent": the same outcome, one audit
        event per warning."""
        first, second = warned(world, ("en", "en"))
        twilio.set_faults(
            Faults(undeliverable={second: 30005}, callbacks_reversed=True, callbacks_twice=True)
        )
        env = sender_environment(world.url, twilio, twilio_status_callback_url=callback_url)
        assert recycler("send", "--once", env=env).code == 0
        assert twilio.callbacks_done() == [200] * 8
        assert recycler("send", "--once", env=env).code == 0
        assert outcomes(world) == {
            first: (WarningState.DELIVERED, None),
            second: (WarningState.UNDELIVERED, "30005"),
        }
        assert world.events_of(first).count(AuditEvent.WARNING_DELIVERED) == 1
        assert world.events_of(second).count(AuditEvent.WARNING_UNDELIVERED) == 1

    def test_forged_callbacks_refused(
        self, world: World, api: ApiServer, callback_url: str
    ) -> None:
        """No signature, a signature under another token, a signature for another URL, a form
        changed after signing: 403 each, nothing kept. A signed callback for an unknown SID:
        200, kept, and it moves nothing."""
        form = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "To": "+85512000001"}
        right = RequestValidator(AUTH_TOKEN).compute_signature(callback_url, form)
        forged = [
            {},
            {
                "X-Twilio-Signature": RequestValidator("another-token").compute_signature(
                    callback_url, form
                )
            },
            {
                "X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(
                    "http://attacker.example/receipts/twilio", form
                )
            },
        ]
        for headers in forged:
            answer = httpx.post(callback_url, data=form, headers=headers)
            assert answer.status_code == 403, answer.text
        changed = {**form, "MessageStatus": "undelivered"}
        answer = httpx.post(callback_url, data=changed, headers={"X-Twilio-Signature": right})
        assert answer.status_code == 403
        assert kept_receipts(world) == 0
        answer = httpx.post(callback_url, data=form, headers={"X-Twilio-Signature": right})
        assert answer.status_code == 200
        assert kept_receipts(world) == 1

    def test_refused_when_not_configured(self, world: World, tmp_path: Path) -> None:
        """An API without the auth token refuses every status callback."""
        with running_api(world, tmp_path) as server:
            answer = httpx.post(
                f"{server.base_url}{TWILIO_PATH}",
                data={"MessageSid": "SMx", "MessageStatus": "delivered"},
                headers={"X-Twilio-Signature": "x"},
            )
            assert answer.status_code == 403
            answer = httpx.get(
                f"{server.base_url}{KANNEL_PATH}",
                params={"message": "warning-1", "signature": "x", "type": "1"},
            )
            assert answer.status_code == 403
        assert kept_receipts(world) == 0


# Kannel ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kannel]:
    missing = kannel_missing()
    if missing is not None:
        pytest.skip(missing)
    running = Kannel(tmp_path_factory.mktemp("kannel")).start()
    yield running
    running.stop()


def kannel_sender(world: World, kannel: Kannel, api: ApiServer, **settings: str) -> dict[str, str]:
    chosen = {
        "gateway": "kannel",
        "kannel_sendsms_url": kannel.sendsms_url,
        "kannel_username": USERNAME,
        "kannel_sender": "Recycler",
        "kannel_receipt_url": f"{api.base_url}{KANNEL_PATH}",
        "send_window": "00:00-24:00",
        "send_rate": "0",
        **settings,
    }
    env = environment(world.url, **chosen)
    env["KANNEL_PASSWORD"] = PASSWORD
    env["KANNEL_RECEIPT_SECRET"] = RECEIPT_SECRET
    return env


def texts(world: World) -> dict[str, str]:
    with world.database.read() as connection:
        rows = connection.execute(sa.select(warnings.c.msisdn, warnings.c.text)).all()
    return {row.msisdn: row.text for row in rows}


@pytest.mark.needs_kannel
class TestKannel:
    def test_warnings_reach_the_smsc_and_receipts_come_back(
        self, world: World, kannel: Kannel, api: ApiServer
    ) -> None:
        """An English warning arrives as GSM text in one message, a Khmer one as UCS-2 in
        three concatenated parts, both to the subscriber's number from the configured sender;
        Kannel's receipts come back to the API and the next send records them delivered."""
        before = len(kannel.received())
        english, khmer = warned(world, ("en", "km"))
        env = kannel_sender(world, kannel, api)
        sent = recycler("send", "--once", "--json", env=env)
        assert sent.code == 0, sent
        assert sent.json()["sent"] == 2
        received = kannel.wait_for(before + 4)[before:]
        assert len(received) == 4
        by_number = {
            number: [message for message in received if message.receiver == number]
            for number in (english, khmer)
        }
        assert all(message.sender == "Recycler" for message in received)
        [english_message] = by_number[english]
        assert english_message.kind == "text"
        assert english_message.text == texts(world)[english]
        khmer_parts = by_number[khmer]
        assert len(khmer_parts) == 3
        # A concatenation header (reference, 3 parts, part n), and UTF-16 bytes: UCS-2.
        assert [part.udh[-2:] for part in khmer_parts] == [b"\x03\x01", b"\x03\x02", b"\x03\x03"]
        assert "".join(part.text for part in khmer_parts) == texts(world)[khmer]
        wait_for_receipts(world, 2)
        applied = recycler("send", "--once", "--json", env=env)
        # Applied by the first send if they came before it finished, else by the second.
        assert sent.json()["receipts"] + applied.json()["receipts"] == 2
        assert outcomes(world) == {
            english: (WarningState.DELIVERED, None),
            khmer: (WarningState.DELIVERED, None),
        }

    def test_kannel_down_is_retried_and_no_notice(
        self, world: World, kannel: Kannel, api: ApiServer
    ) -> None:
        """Nothing listens at the sendsms URL: the warning waits to be retried (exit 1 of
        `send --once`: some retried), never sent."""
        [number] = warned(world, ("en",))
        closed = f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms"
        env = kannel_sender(world, kannel, api, kannel_sendsms_url=closed)
        result = recycler("send", "--once", "--json", env=env)
        assert result.json()["retried"] == 1, result
        with world.database.read() as connection:
            row = connection.execute(
                sa.select(warnings.c.state, warnings.c.error_code, warnings.c.final_on)
            ).one()
        assert tuple(row) == (WarningState.PENDING, "connection", None)
        assert outcomes(world)[number][0] == WarningState.PENDING

    def test_wrong_password_blocks(self, world: World, kannel: Kannel, api: ApiServer) -> None:
        """Kannel refuses the credentials (403): the operator's side, so the warning is
        blocked, never notice, and `send` fails with the reason."""
        [number] = warned(world, ("en",))
        env = kannel_sender(world, kannel, api)
        env["KANNEL_PASSWORD"] = "not-the-password"
        result = recycler("send", "--once", "--json", env=env)
        assert result.code == 1, result
        assert result.json()["blocked"] == 1
        assert "Authorization failed" in result.json()["gateway_problem"]
        assert outcomes(world)[number] == (WarningState.BLOCKED, None)

    def test_forged_delivery_reports_refused(self, world: World, api: ApiServer) -> None:
        """A dlr call without the signature recycler gave Kannel, or with another message's,
        is refused (403) and keeps nothing; a signed one is kept."""
        url = f"{api.base_url}{KANNEL_PATH}"
        for params in (
            {"message": "warning-1", "signature": "0" * 64, "type": "1"},
            {
                "message": "warning-1",
                "signature": receipt_signature(RECEIPT_SECRET, "warning-2"),
                "type": "1",
            },
            {
                "message": "warning-1",
                "signature": receipt_signature("other", "warning-1"),
                "type": "1",
            },
        ):
            assert httpx.get(url, params=params).status_code == 403
        assert kept_receipts(world) == 0
        signed = {
            "message": "warning-1",
            "signature": receipt_signature(RECEIPT_SECRET, "warning-1"),
        }
        assert httpx.get(url, params={**signed, "type": "8", "answer": "ACK/"}).status_code == 200
        assert kept_receipts(world) == 0  # the SMSC's acceptance says nothing new
        assert (
            httpx.get(
                url, params={**signed, "type": "16", "answer": "NACK/0x0000000b/Invalid"}
            ).status_code
            == 200
        )
        assert kept_receipts(world) == 1
