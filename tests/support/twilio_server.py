"""A Twilio-compatible HTTP server for tests: the Messages endpoint, over real HTTP on 127.0.0.1.

It answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` the way Twilio does (form
body, basic auth, JSON message resource with status 201, JSON error bodies with Twilio's codes),
and can be told to be slow, to fail a share of requests (500, 503, 429, or no answer in time), or
to refuse given numbers for good. It counts what it accepted, so tests can say "sent exactly
once" by the gateway's own count.

Run it in a thread of the test (``TwilioTestServer``) or as a process of its own (``python -m
tests.support.twilio_server --port N``), steered then through ``/_control`` endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientSession, web
from twilio.request_validator import RequestValidator

__all__ = [
    "ACCOUNT_SID",
    "AUTH_TOKEN",
    "Accepted",
    "Faults",
    "TwilioTestServer",
    "sender_environment",
]

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "test-auth-token-" + "x" * 16
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


@dataclass
class Faults:
    """What the server does besides accepting messages."""

    latency: float = 0.0  # seconds before every answer
    failure_rate: float = 0.0  # share of requests that fail with a passing error
    # Relative weights of the passing failures: HTTP 500, 503, 429, and no answer in time.
    mix: dict[str, float] = field(
        default_factory=lambda: {"500": 1.0, "503": 1.0, "429": 1.0, "timeout": 1.0}
    )
    timeout_seconds: float = 3.0  # how long a "no answer in time" request hangs
    refuse: dict[str, int] = field(default_factory=dict)  # number -> Twilio error code
    # Status callbacks, when a message names a StatusCallback: numbers the network cannot
    # reach (number -> Twilio error code; the others are delivered), callbacks in reverse
    # order (the final status first, then "sent", as Twilio's do arrive at times), and each
    # callback sent twice.
    undeliverable: dict[str, int] = field(default_factory=dict)
    callbacks_reversed: bool = False
    callbacks_twice: bool = False
    seed: int = 1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        return cls(**data)


@dataclass(frozen=True)
class Accepted:
    """One message the server accepted."""

    sid: str
    to: str
    body: str
    sender: str
    at: float  # time.monotonic() when accepted


_ERRORS = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "Invalid 'To' Phone Number"),
    21408: (400, "Permission to send an SMS has not been enabled for the region"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required"),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    20404: (404, "The requested resource was not found"),
    21212: (400, "Invalid 'From' Phone Number"),
    21606: (400, "The 'From' phone number provided is not a valid message-capable number"),
    21608: (400, "The number is unverified: trial accounts send to verified numbers only"),
    30007: (400, "Message filtered by the carrier"),
}


def _error(code: int) -> web.Response:
    status, message = _ERRORS[code]
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class _App:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.random = random.Random(faults.seed)
        self.accepted: list[Accepted] = []
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.callbacks: list[asyncio.Task[None]] = []
        self.callback_answers: list[int] = []

    def configure(self, faults: Faults) -> None:
        self.faults = faults
        self.random = random.Random(faults.seed)

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((message.to, message.body) for message in self.accepted)

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        return request.headers.get("Authorization", "") == f"Basic {expected}"

    def _fault(self) -> str | None:
        if self.random.random() >= self.faults.failure_rate:
            return None
        kinds = list(self.faults.mix)
        return self.random.choices(kinds, weights=[self.faults.mix[k] for k in kinds])[0]

    async def messages(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._messages(request)
        finally:
            self.in_flight -= 1

    async def _messages(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != ACCOUNT_SID or not self._authorised(request):
            return _error(20003)
        form = await request.post()
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        fault = self._fault()
        if fault == "timeout":
            # Hang past the client's patience, then give up without accepting anything.
            await asyncio.sleep(self.faults.timeout_seconds)
            return _error(20503)
        if fault is not None:
            return _error({"500": 20500, "503": 20503, "429": 20429}[fault])
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        sender = str(form.get("From") or form.get("MessagingServiceSid") or "")
        if not to:
            return _error(21604)
        if not body:
            return _error(21602)
        if not sender:
            return _error(21603)
        if to in self.faults.refuse:
            return _error(self.faults.refuse[to])
        sid = "SM" + secrets.token_hex(16)
        self.accepted.append(Accepted(sid, to, body, sender, time.monotonic()))
        callback = str(form.get("StatusCallback") or "")
        if callback:
            # After the answer, as Twilio does: the message first exists, then moves.
            self.callbacks.append(
                asyncio.get_running_loop().create_task(
                    self._status_callbacks(callback, sid, to, sender)
                )
            )
        now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        return web.json_response(
            {
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"
                },
                "to": to,
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
            status=201,
        )

    async def _status_callbacks(self, url: str, sid: str, to: str, sender: str) -> None:
        """POST the message's statuses to its StatusCallback, signed as Twilio signs them."""
        await asyncio.sleep(0.05)
        code = self.faults.undeliverable.get(to)
        final = (
            {"MessageStatus": "undelivered", "ErrorCode": str(code)}
            if code
            else {"MessageStatus": "delivered"}
        )
        statuses = [{"MessageStatus": "sent"}, final]
        if self.faults.callbacks_reversed:
            statuses.reverse()
        if self.faults.callbacks_twice:
            statuses = [status for status in statuses for _ in range(2)]
        validator = RequestValidator(AUTH_TOKEN)
        async with ClientSession() as session:
            for status in statuses:
                form = {
                    "AccountSid": ACCOUNT_SID,
                    "ApiVersion": "2010-04-01",
                    "From": sender,
                    "MessageSid": sid,
                    "SmsSid": sid,
                    "SmsStatus": status["MessageStatus"],
                    "To": to,
                    **status,
                }
                signature = validator.compute_signature(url, form)
                async with session.post(
                    url, data=form, headers={"X-Twilio-Signature": signature}
                ) as answer:
                    self.callback_answers.append(answer.status)

    async def control_messages(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "peak_in_flight": self.peak_in_flight,
                "accepted": [
                    {"sid": m.sid, "to": m.to, "body": m.body, "at": m.at} for m in self.accepted
                ],
            }
        )

    async def control_faults(self, request: web.Request) -> web.Response:
        self.configure(Faults.from_json(await request.json()))
        return web.json_response({"ok": True})

    def application(self) -> web.Application:
        application = web.Application()
        application.router.add_post(MESSAGES_PATH, self.messages)
        application.router.add_get("/_control/messages", self.control_messages)
        application.router.add_post("/_control/faults", self.control_faults)
        return application


class TwilioTestServer:
    """The server on a free port in a background thread, for one test."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._app = _App(faults or Faults())
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        """What RECYCLER_TWILIO_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[Accepted]:
        """Every message accepted so far."""
        return list(self._app.accepted)

    @property
    def requests(self) -> int:
        """Every request received on the Messages endpoint."""
        return self._app.requests

    def counts(self) -> Counter[tuple[str, str]]:
        """How many times each (to, body) was accepted."""
        return self._app.counts()

    def callbacks_done(self, timeout: float = 30) -> list[int]:
        """Wait until every status callback was answered; returns the HTTP statuses."""

        async def finished() -> None:
            await asyncio.gather(*self._app.callbacks)

        asyncio.run_coroutine_threadsafe(finished(), self._loop).result(timeout=timeout)
        return list(self._app.callback_answers)

    def set_faults(self, faults: Faults) -> None:
        """Change the behaviour from now on."""
        self._app.configure(faults)

    def start(self) -> TwilioTestServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        # aiohttp has no public way to read the port the system chose.
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> TwilioTestServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    """Serve in the foreground, for benchmarks that keep the server out of the sender's process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--reuse-port", action="store_true", help="let several processes share the port"
    )
    arguments = parser.parse_args()
    web.run_app(
        _App(Faults(latency=arguments.latency)).application(),
        host="127.0.0.1",
        port=arguments.port,
        access_log=None,
        print=None,
        reuse_port=arguments.reuse_port,
    )


if __name__ == "__main__":
    main()


def sender_environment(
    database_url: str, server: TwilioTestServer, **settings: str
) -> dict[str, str]:
    """The environment of a `recycler send` process sending through this server at any hour
    with no rate limit, its credentials included; `settings` add to or override these."""
    from tests.support.cli import environment  # noqa: PLC0415  (the server runs without it)

    chosen = {
        "gateway": "twilio",
        "twilio_from": "+15005550006",
        "twilio_base_url": server.base_url,
        "send_window": "00:00-24:00",
        "send_rate": "0",
        **settings,
    }
    env = environment(database_url, **chosen)
    env["TWILIO_ACCOUNT_SID"] = ACCOUNT_SID
    env["TWILIO_AUTH_TOKEN"] = AUTH_TOKEN
    return env
