"""One set of conformance tests for every gateway: the in-memory one, and the Twilio adapter
talking real HTTP, through the official client, to the Twilio-compatible test server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from notifier.gateway import (
    Gateway,
    OperatorGatewayError,
    RecipientGatewayError,
    RetryableGatewayError,
)
from notifier.message import Message
from notifier.testing import InMemoryGateway
from notifier.twilio_gateway import TwilioConfig, TwilioGateway
from tests.support.twilio_server import ACCOUNT_SID, AUTH_TOKEN, Faults, TwilioTestServer

TO = "+85512345678"


class Arrangement(Protocol):
    """A gateway under test and the means to make it answer each way."""

    gateway: Gateway

    def refuse(self, to: str, code: int) -> None: ...

    def fail_once(self, kind: str) -> None: ...

    def accepted(self) -> list[tuple[str, str]]: ...


@dataclass
class MemoryArrangement:
    gateway: InMemoryGateway = field(default_factory=InMemoryGateway)

    def refuse(self, to: str, code: int) -> None:
        self.gateway.refuse(to, RecipientGatewayError(str(code)))

    def fail_once(self, kind: str) -> None:
        code = {"500": "20500", "503": "20503", "429": "20429", "timeout": "timeout"}[kind]
        self.gateway.fail_next(RetryableGatewayError(code))

    def accepted(self) -> list[tuple[str, str]]:
        return [(message.to, message.text) for message in self.gateway.sent]


@dataclass
class TwilioArrangement:
    server: TwilioTestServer
    gateway: TwilioGateway

    def refuse(self, to: str, code: int) -> None:
        self.server.set_faults(Faults(refuse={to: code}))

    def fail_once(self, kind: str) -> None:
        self.server.set_faults(Faults(failure_rate=1.0, mix={kind: 1.0}, timeout_seconds=2.0))

    def accepted(self) -> list[tuple[str, str]]:
        return [(message.to, message.body) for message in self.server.accepted]


def _twilio(server: TwilioTestServer, **overrides: object) -> TwilioGateway:
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": "+15005550006",
        "base_url": server.base_url,
        "timeout_seconds": 1.0,
        **overrides,
    }
    return TwilioGateway(TwilioConfig(**config))  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "twilio"])
def arrangement(request: pytest.FixtureRequest) -> Iterator[Arrangement]:
    if request.param == "memory":
        yield MemoryArrangement()
        return
    with TwilioTestServer() as server:
        yield TwilioArrangement(server, _twilio(server))


def send(gateway: Gateway, to: str = TO, text: str = "hello") -> str:
    async def once() -> str:
        try:
            return await gateway.send(Message.of(to, text, "ref-1"))
        finally:
            await gateway.close()

    return asyncio.run(once())


class TestConformance:
    """Every gateway answers the same way to the same situation."""

    def test_success_returns_the_gateways_id(self, arrangement: Arrangement) -> None:
        """Accepted: an id comes back and the message is counted once."""
        message_id = send(arrangement.gateway, text="Your number 012345678 …")
        assert message_id
        assert arrangement.accepted() == [(TO, "Your number 012345678 …")]

    @pytest.mark.parametrize("code", [21211, 21610, 21614, 21408])
    def test_refusals_about_the_number(self, arrangement: Arrangement, code: int) -> None:
        """Invalid number, unsubscribed, not mobile, region off: about the recipient, final,
        with the code."""
        arrangement.refuse(TO, code)
        with pytest.raises(RecipientGatewayError) as raised:
            send(arrangement.gateway)
        assert raised.value.code == str(code)
        assert not raised.value.retryable
        assert arrangement.accepted() == []

    @pytest.mark.parametrize(
        ("kind", "code"), [("500", "20500"), ("503", "20503"), ("429", "20429")]
    )
    def test_passing_failures(self, arrangement: Arrangement, kind: str, code: str) -> None:
        """5xx and 429 may pass: retryable, with the gateway's code."""
        arrangement.fail_once(kind)
        with pytest.raises(RetryableGatewayError) as raised:
            send(arrangement.gateway)
        assert raised.value.code == code
        assert arrangement.accepted() == []

    def test_timeout(self, arrangement: Arrangement) -> None:
        """No answer in time is retryable, coded "timeout"."""
        arrangement.fail_once("timeout")
        with pytest.raises(RetryableGatewayError) as raised:
            send(arrangement.gateway)
        assert raised.value.code == "timeout"


class TestTwilioSpecifics:
    """What only the Twilio adapter does."""

    def test_connection_refused_is_the_operators_side(self) -> None:
        """Nobody listening at the base URL: the operator's to fix, coded "connection"."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        gateway = TwilioGateway(
            TwilioConfig(
                account_sid=ACCOUNT_SID,
                auth_token=AUTH_TOKEN,
                from_number="+15005550006",
                base_url=f"http://127.0.0.1:{port}",
            )
        )
        with pytest.raises(OperatorGatewayError) as raised:
            send(gateway)
        assert raised.value.code == "connection"

    def test_wrong_token_is_the_operators_side(self) -> None:
        """Twilio's 20003 (authenticate) is about the operator's credentials, not the number."""
        with TwilioTestServer() as server:
            gateway = _twilio(server, auth_token="wrong")
            with pytest.raises(OperatorGatewayError) as raised:
                send(gateway)
        assert raised.value.code == "20003"

    def test_wrong_account_is_the_operators_side(self) -> None:
        """A wrong account SID (Twilio answers 20003 for it too) is the operator's to fix."""
        with TwilioTestServer() as server:
            gateway = _twilio(server, account_sid="AC" + "9" * 32)
            with pytest.raises(OperatorGatewayError):
                send(gateway)
        assert server.accepted == []

    @pytest.mark.parametrize("code", [21212, 21606, 21608, 20404, 30007])
    def test_other_refusals_are_the_operators_side(self, code: int) -> None:
        """A bad sender, a trial account, anything not about the number: never notice."""
        with TwilioTestServer() as server:
            server.set_faults(Faults(refuse={TO: code}))
            with pytest.raises(OperatorGatewayError) as raised:
                send(_twilio(server))
        assert raised.value.code == str(code)

    def test_messaging_service_instead_of_a_number(self) -> None:
        """MessagingServiceSid goes out when no sender number is set."""
        with TwilioTestServer() as server:
            send(_twilio(server, from_number=None, messaging_service_sid="MG" + "1" * 32))
            (accepted,) = server.accepted
        assert accepted.sender == "MG" + "1" * 32

    def test_the_token_is_never_shown(self) -> None:
        """repr() of the configuration hides the auth token."""
        config = TwilioConfig(
            account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number="+15005550006"
        )
        assert AUTH_TOKEN not in repr(config)
        assert AUTH_TOKEN not in str(config)
