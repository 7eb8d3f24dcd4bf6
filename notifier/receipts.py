"""Delivery receipts: what a gateway reports after it accepted a message.

Each gateway speaks its own words (Twilio's ``MessageStatus``, Kannel's DLR type bits); here they
become one of two final outcomes, or nothing at all for the steps in between (queued at the SMSC,
sent to the network), which say no more than the acceptance recycler already recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "KANNEL_DLR_MASK",
    "DeliveryOutcome",
    "Receipt",
    "kannel_receipt",
    "twilio_receipt",
]


class DeliveryOutcome(StrEnum):
    """The two final answers of a network about one message."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"


@dataclass(frozen=True)
class Receipt:
    """One receipt as recycler keeps it: the outcome (None for a step in between), the
    gateway's own status word, and the error code that came with a failure."""

    outcome: DeliveryOutcome | None
    status: str
    error_code: str | None = None


# Kannel's DLR types (the %d of a dlr-url), as bits of its dlr-mask.
_KANNEL_DELIVERED = 1  # delivered to the phone
_KANNEL_UNDELIVERED = 2  # not delivered to the phone
_KANNEL_BUFFERED = 4  # queued at the SMSC
_KANNEL_SMSC_SUBMIT = 8  # the SMSC accepted it
_KANNEL_SMSC_REJECT = 16  # the SMSC refused it
# What recycler asks Kannel to report: delivery, failure, SMSC submit and SMSC reject.
KANNEL_DLR_MASK = (
    _KANNEL_DELIVERED | _KANNEL_UNDELIVERED | _KANNEL_SMSC_SUBMIT | _KANNEL_SMSC_REJECT
)

# An SMPP receipt's text ("id:… stat:UNDELIV err:001 …") carries the network's error code; an
# SMSC refusal's answer ("NACK/0x0000000b/Invalid Destination Address") carries the SMPP status.
_SMPP_ERROR = re.compile(r"\berr:([0-9A-Za-z]{1,8})")
_SMSC_NACK = re.compile(r"NACK/(0x[0-9A-Fa-f]{1,8}|[0-9]{1,10})")


def kannel_receipt(dlr_type: int, answer: str) -> Receipt:
    """Kannel's DLR type and the SMSC's answer (%A) as a receipt."""
    status = str(dlr_type)
    if dlr_type & _KANNEL_DELIVERED:
        return Receipt(DeliveryOutcome.DELIVERED, status)
    if dlr_type & (_KANNEL_UNDELIVERED | _KANNEL_SMSC_REJECT):
        found = _SMPP_ERROR.search(answer) or _SMSC_NACK.search(answer)
        code = found.group(1) if found else f"dlr-{dlr_type}"
        return Receipt(DeliveryOutcome.UNDELIVERED, status, code)
    return Receipt(None, status)


# Twilio's message statuses that end a message's story; the others (queued, sending, sent,
# accepted, scheduled) are steps on the way. "failed" after acceptance means Twilio could not
# send it on (its error code says why): the message was not delivered.
_TWILIO_FINAL = {
    "delivered": DeliveryOutcome.DELIVERED,
    "read": DeliveryOutcome.DELIVERED,
    "undelivered": DeliveryOutcome.UNDELIVERED,
    "failed": DeliveryOutcome.UNDELIVERED,
}


def twilio_receipt(message_status: str, error_code: str | None) -> Receipt:
    """A Twilio status callback's ``MessageStatus`` and ``ErrorCode`` as a receipt."""
    status = message_status.strip().lower()
    outcome = _TWILIO_FINAL.get(status)
    code = (error_code or "").strip() or None
    if outcome is DeliveryOutcome.UNDELIVERED and code is None:
        code = status
    return Receipt(outcome, status[:32], code[:32] if code else None)
