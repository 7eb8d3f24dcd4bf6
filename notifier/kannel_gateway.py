"""The Kannel adapter: an operator's own SMSC, through Kannel's ``sendsms`` HTTP interface.

Kannel (smsbox) takes each message over HTTP and hands it to bearerbox, which speaks SMPP (or
another protocol) to the SMSC. Khmer goes as UCS-2 (``coding=2``), everything else as GSM-7;
the text is always given in UTF-8 and Kannel converts it. Every message asks for delivery reports
(``dlr-mask``) at a ``dlr-url`` of ``recycler api`` that names the message and carries a
signature, so that nobody but the Kannel that was given the URL can report on a message.

The password travels in the query string, as Kannel requires: no error raised here ever
includes the request's URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from notifier.encoding import Encoding
from notifier.gateway import (
    OperatorGatewayError,
    RecipientGatewayError,
    RetryableGatewayError,
)
from notifier.message import Message
from notifier.receipts import KANNEL_DLR_MASK

__all__ = ["KannelConfig", "KannelGateway", "receipt_signature", "receipt_url"]

_ACCEPTED = "0:"
_QUEUED = "3:"  # "Queued for later delivery": no SMSC took it (none connected)
_SERVER_ERROR = 500
_ANSWER_LENGTH = 200
# Kannel's refusals that are about the receiver's number, by the words of its answer; every
# other 4xx (credentials, a missing sender, a wrong SMSC id) is the operator's to fix.
_RECIPIENT_REFUSALS = ("denied by white- and/or black-lists",)


def receipt_signature(secret: str, message_id: str) -> str:
    """The signature a dlr-url carries for one message: HMAC-SHA256 under the receipt secret."""
    return hmac.new(secret.encode(), message_id.encode(), hashlib.sha256).hexdigest()


def receipt_url(base_url: str, secret: str, message_id: str) -> str:
    """The dlr-url for one message. Kannel fills in %d (the DLR type) and %A (the SMSC's
    answer) when it calls it; the rest was fixed when the message left."""
    fixed = urlencode({"message": message_id, "signature": receipt_signature(secret, message_id)})
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}{fixed}&type=%d&answer=%A"


@dataclass(frozen=True)
class KannelConfig:
    """Where Kannel's sendsms listens, as whom to send, and where receipts go."""

    sendsms_url: str
    username: str
    password: str
    sender: str
    smsc_id: str | None = None
    receipt_url: str | None = None
    receipt_secret: str | None = None
    timeout_seconds: float = 10.0
    max_connections: int = 16

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise ValueError("a Kannel sendsms username and password are both required")
        if self.receipt_url is not None and not self.receipt_secret:
            raise ValueError("delivery reports need the receipt secret that signs their URLs")

    def __repr__(self) -> str:
        # The dataclass default would print the password and the secret into a log line.
        return (
            f"KannelConfig(sendsms_url={self.sendsms_url!r}, username={self.username!r}, "
            f"password='***', sender={self.sender!r}, smsc_id={self.smsc_id!r}, "
            f"receipt_url={self.receipt_url!r})"
        )


class KannelGateway:
    """Sends through Kannel's sendsms interface with aiohttp."""

    def __init__(self, config: KannelConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        """``kannel``."""
        return "kannel"

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Made inside the running event loop: an aiohttp session belongs to the loop that made it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
                connector=aiohttp.TCPConnector(limit=self._config.max_connections),
            )
        return self._session

    def parameters(self, message: Message) -> dict[str, str]:
        """The sendsms query for one message (the password included)."""
        config = self._config
        query = {
            "username": config.username,
            "password": config.password,
            "from": config.sender,
            "to": message.to,
            "text": message.text,
            "charset": "UTF-8",
            "coding": "2" if message.encoding is Encoding.UCS2 else "0",
        }
        if config.smsc_id:
            query["smsc"] = config.smsc_id
        if config.receipt_url and config.receipt_secret:
            query["dlr-mask"] = str(KANNEL_DLR_MASK)
            query["dlr-url"] = receipt_url(
                config.receipt_url, config.receipt_secret, message.reference
            )
        return query

    async def send(self, message: Message) -> str:
        """Hand one message to Kannel; its id is recycler's reference, which the dlr-url names
        (Kannel's own answer carries no id)."""
        session = self._ensure_session()
        try:
            async with (
                asyncio.timeout(self._config.timeout_seconds + 1),
                session.get(self._config.sendsms_url, params=self.parameters(message)) as answer,
            ):
                status = answer.status
                body = (await answer.text(errors="replace")).strip()[:_ANSWER_LENGTH]
        except TimeoutError:
            raise RetryableGatewayError("timeout", "Kannel did not answer in time") from None
        except aiohttp.ClientConnectorError as error:
            # Kannel restarting, or smsbox not up yet: the operator's own gateway, usually back
            # in a moment. Retried; if it stays down the warning ends blocked, never notice.
            raise RetryableGatewayError(
                "connection", f"Kannel refused the connection ({error.os_error})"
            ) from None
        except aiohttp.ClientError as error:
            raise RetryableGatewayError("connection", type(error).__name__) from None
        return _accepted(status, body, message.reference)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _accepted(status: int, body: str, reference: str) -> str:
    """The message id of an accepted message, or the error Kannel's answer means."""
    if body.startswith(_ACCEPTED) and status < 300:
        return reference
    if body.startswith(_QUEUED):
        # Kannel holds it until an SMSC connects: nothing has reached the network, so it is no
        # notice yet, and it is tried again like any passing failure.
        raise RetryableGatewayError("queued", body)
    if status >= _SERVER_ERROR:
        raise RetryableGatewayError(str(status), body)
    lowered = body.lower()
    if any(words in lowered for words in _RECIPIENT_REFUSALS):
        raise RecipientGatewayError(str(status), body)
    raise OperatorGatewayError(str(status), body)
