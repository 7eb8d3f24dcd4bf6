"""The Twilio adapter: the official ``twilio`` client, asynchronous, with errors sorted into
retryable and permanent.

The API base URL can point elsewhere (a Twilio-compatible gateway, or the test server recycler's
tests run), and the auth token is handed in, never read from a file, and never logged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from notifier.gateway import (
    GatewayError,
    OperatorGatewayError,
    RecipientGatewayError,
    RetryableGatewayError,
)
from notifier.message import Message

__all__ = ["RECIPIENT_CODES", "TWILIO_API", "TwilioConfig", "TwilioGateway", "classify"]

TWILIO_API = "https://api.twilio.com"
_TOO_MANY_REQUESTS = 429
_SERVER_ERROR = 500

# Twilio's error codes that are about the recipient's number, and only those: anything else
# Twilio refuses (20003 authentication, 20404 a wrong account, 21212 or 21606 a bad sender,
# 21608 a trial account, …) is about the operator's own account or settings.
RECIPIENT_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21217,  # phone number does not appear to be valid
        21401,  # invalid phone number
        21407,  # this phone number type does not support SMS
        21408,  # permission to send to this region has not been enabled
        21421,  # phone number is invalid
        21610,  # the recipient replied STOP: unsubscribed
        21612,  # the 'To' number cannot be reached by SMS
        21614,  # 'To' number is not a valid mobile number
        21635,  # 'To' number cannot be a landline
        30003,  # unreachable destination handset (on delivery)
        30004,  # message blocked by the recipient (on delivery)
        30005,  # unknown destination handset (on delivery)
        30006,  # landline or unreachable carrier (on delivery)
    }
)


@dataclass(frozen=True)
class TwilioConfig:
    """Where and as whom to send. Exactly one of sender number and messaging service."""

    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    base_url: str = TWILIO_API
    timeout_seconds: float = 10.0
    max_connections: int = 16
    # Where Twilio posts each message's status (recycler api's /receipts/twilio); None: no
    # receipts are asked for.
    status_callback_url: str | None = None

    def __post_init__(self) -> None:
        if not self.account_sid or not self.auth_token:
            raise ValueError("a Twilio account SID and auth token are both required")
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give either a sender number or a messaging service SID, not both")

    def __repr__(self) -> str:
        # The dataclass default would print the auth token into any log line or traceback.
        return (
            f"TwilioConfig(account_sid={self.account_sid!r}, auth_token='***', "
            f"from_number={self.from_number!r}, "
            f"messaging_service_sid={self.messaging_service_sid!r}, base_url={self.base_url!r})"
        )


def classify(error: TwilioRestException) -> GatewayError:
    """429 and 5xx may pass; a refusal with one of the recipient codes is about the number;
    every other refusal (401, 403, 404, a 400 about the sender or the account) is the
    operator's to fix."""
    code = str(error.code or error.status)
    detail = str(error.msg or "")
    if error.status == _TOO_MANY_REQUESTS or error.status >= _SERVER_ERROR:
        return RetryableGatewayError(code, detail)
    if error.code in RECIPIENT_CODES:
        return RecipientGatewayError(code, detail)
    return OperatorGatewayError(code, detail)


class TwilioGateway:
    """Sends through Twilio's Messages API with ``messages.create_async``."""

    def __init__(self, config: TwilioConfig) -> None:
        self._config = config
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    @property
    def name(self) -> str:
        """``twilio``."""
        return "twilio"

    def _ensure_client(self) -> Client:
        # Built inside the running event loop: aiohttp sessions belong to the loop that made them.
        if self._client is None:
            http = AsyncTwilioHttpClient(pool_connections=False)
            # The twilio client passes no timeout of its own to aiohttp, so the session carries
            # it, along with a connection pool sized to the requests kept in flight.
            http.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
                connector=aiohttp.TCPConnector(limit=self._config.max_connections),
            )
            client = Client(self._config.account_sid, self._config.auth_token, http_client=http)
            client.api.base_url = self._config.base_url.rstrip("/")
            self._http = http
            self._client = client
        return self._client

    async def send(self, message: Message) -> str:
        """Create one message; returns Twilio's message SID."""
        client = self._ensure_client()
        try:
            async with asyncio.timeout(self._config.timeout_seconds + 1):
                created = await client.messages.create_async(
                    to=message.to,
                    body=message.text,
                    from_=self._config.from_number,
                    messaging_service_sid=self._config.messaging_service_sid,
                    status_callback=self._config.status_callback_url,
                )
        except TwilioRestException as error:
            raise classify(error) from None
        except TimeoutError:
            raise RetryableGatewayError("timeout", "no answer in time") from None
        except aiohttp.ClientConnectorError as error:
            # Nothing answers at the configured address (refused, no such host): the base URL
            # or the network is wrong, and every message would meet the same.
            raise OperatorGatewayError("connection", str(error)) from None
        except aiohttp.ClientError as error:
            # The gateway was reached, but the exchange broke off (a reset, a truncated answer).
            raise RetryableGatewayError("connection", type(error).__name__) from None
        return str(created.sid)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None
