"""Delivery receipts over HTTP: Twilio's status callbacks and Kannel's dlr-url.

Both come from outside, unauthenticated by any token, so each is proved by a signature before
anything is read: Twilio's ``X-Twilio-Signature`` (HMAC-SHA1 of the callback URL and the form,
under the account's auth token, checked by the twilio library's validator against the URL
configured in ``twilio_status_callback_url``, which is the one Twilio signed whatever proxy sits
in front), and the signature recycler put in each dlr-url it gave Kannel (HMAC-SHA256 of the
message id under ``KANNEL_RECEIPT_SECRET``). An unsigned or wrongly signed request is refused
(403) and logged; a signed one is kept (jobs/sending/receipts.py) and answered 200 at once,
whatever it says, so that a gateway never retries a receipt recycler already has.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, Response
from twilio.request_validator import RequestValidator

from jobs.clock import Clock, local_date
from jobs.database.engine import Database
from jobs.sending.gateways import KANNEL_RECEIPT_SECRET
from jobs.sending.receipts import keep_receipt
from jobs.settings import Settings
from notifier.kannel_gateway import receipt_signature
from notifier.receipts import Receipt, kannel_receipt, twilio_receipt

__all__ = ["KANNEL_PATH", "TWILIO_PATH", "ReceiptSecrets", "add_receipt_routes"]

log = structlog.get_logger(__name__)

TWILIO_PATH = "/receipts/twilio"
KANNEL_PATH = "/receipts/kannel"
_FORBIDDEN = 403
_BAD_REQUEST = 400


@dataclass(frozen=True)
class ReceiptSecrets:
    """The keys receipts are signed with; without one, that gateway's receipts are refused."""

    twilio_auth_token: str | None = None
    kannel_receipt_secret: str | None = None

    @classmethod
    def from_environment(cls) -> ReceiptSecrets:
        """From ``TWILIO_AUTH_TOKEN`` and ``KANNEL_RECEIPT_SECRET``, like the senders."""
        return cls(
            os.environ.get("TWILIO_AUTH_TOKEN") or None,
            os.environ.get(KANNEL_RECEIPT_SECRET) or None,
        )

    def __repr__(self) -> str:
        return "ReceiptSecrets(***)"


def add_receipt_routes(
    app: FastAPI, database: Database, settings: Settings, clock: Clock, secrets: ReceiptSecrets
) -> None:
    """The two receipt endpoints, on the API's application."""
    twilio_validator = (
        RequestValidator(secrets.twilio_auth_token)
        if secrets.twilio_auth_token and settings.twilio_status_callback_url
        else None
    )

    async def keep(gateway: str, message_id: str, receipt: Receipt) -> bool:
        if receipt.outcome is None:
            # A step in between ("accepted by the SMSC", "sent"): nothing to keep, and no
            # reason to touch the database (Kannel reports one for every message).
            log.debug("receipt.step", gateway=gateway, message=message_id, status=receipt.status)
            return False
        now = clock.now()
        # One statement, its own transaction, awaited on the event loop like a bank's check.
        kept = await database.each_statement_async(
            keep_receipt,
            gateway=gateway,
            message_id=message_id,
            receipt=receipt,
            now=now,
            today=local_date(now, settings.zone),
        )
        # Whether recycler sent such a message is the senders' to find (the API may not read
        # the outbox, and a receipt can beat the sender's own record of the message by a
        # moment): one for an id never sent is logged by them as receipt.unknown_message.
        log.info(
            "receipt.kept",
            gateway=gateway,
            message=message_id,
            status=receipt.status,
            outcome=receipt.outcome,
        )
        return kept

    # Not in the OpenAPI document: that is the banks' API; these are for the gateways.
    @app.post(TWILIO_PATH, include_in_schema=False)
    async def twilio(request: Request) -> Response:
        form = await request.form()
        fields = {name: str(value) for name, value in form.multi_items()}
        signature = request.headers.get("x-twilio-signature", "")
        if twilio_validator is None:
            log.warning("receipt.refused", gateway="twilio", why="not configured")
            return _refused("Twilio status callbacks are not configured on this server")
        assert settings.twilio_status_callback_url is not None
        if not signature or not twilio_validator.validate(
            settings.twilio_status_callback_url, fields, signature
        ):
            log.warning("receipt.refused", gateway="twilio", why="bad signature")
            return _refused("the X-Twilio-Signature header is missing or wrong")
        message_id = fields.get("MessageSid") or fields.get("SmsSid")
        status = fields.get("MessageStatus") or fields.get("SmsStatus")
        if not message_id or not status:
            return PlainTextResponse(
                "MessageSid and MessageStatus are required", status_code=_BAD_REQUEST
            )
        receipt = twilio_receipt(status, fields.get("ErrorCode"))
        await keep("twilio", message_id, receipt)
        return Response(status_code=200)

    @app.get(KANNEL_PATH, include_in_schema=False)
    async def kannel(
        message: Annotated[str, Query(min_length=1, max_length=64)],
        signature: Annotated[str, Query(min_length=1, max_length=128)],
        dlr_type: Annotated[int, Query(alias="type", ge=0, le=255)],
        answer: Annotated[str, Query(max_length=1000)] = "",
    ) -> Response:
        secret = secrets.kannel_receipt_secret
        if secret is None:
            log.warning("receipt.refused", gateway="kannel", why="not configured")
            return _refused("Kannel delivery reports are not configured on this server")
        if not hmac.compare_digest(receipt_signature(secret, message), signature):
            log.warning("receipt.refused", gateway="kannel", why="bad signature")
            return _refused("the signature does not match the message")
        await keep("kannel", message, kannel_receipt(dlr_type, answer))
        return PlainTextResponse("ok")


def _refused(why: str) -> Response:
    return PlainTextResponse(why, status_code=_FORBIDDEN)
