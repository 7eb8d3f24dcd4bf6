"""The words recycler stores and prints, each defined once.

Every state, outcome, cause and event type that lands in the database, in a metric label, on the
command line or in a test comes from here: the schema's CHECK constraints are built from these
enumerations, the SQL compares against their members, and nothing else spells them as bare
strings. A new word starts here, and a migration adds it to the constraints.
"""

from __future__ import annotations

from enum import StrEnum

# A receipt's outcome is the gateway adapters' word (the notifier knows nothing of jobs); it is
# also the warning state it leads to, and named here with the others.
from notifier.receipts import DeliveryOutcome

__all__ = [
    "CLAIMABLE_STATES",
    "NOTICE_STATES",
    "OPEN_STATES",
    "SETTLED_STATES",
    "UNREACHED_STATES",
    "AuditEvent",
    "ChangeAction",
    "CycleEnd",
    "DeliveryOutcome",
    "Guard",
    "ImportKind",
    "Language",
    "MessageKind",
    "OwnershipEnd",
    "OwnershipStart",
    "PoolLeave",
    "RequestDecision",
    "RequestKind",
    "RequestState",
    "RunOutcome",
    "StaffRole",
    "Verdict",
    "WarningState",
    "one_of",
]


class WarningState(StrEnum):
    """Where a warning stands in the outbox."""

    PENDING = "pending"  # queued, waiting for a sender (or for its next attempt)
    SENDING = "sending"  # claimed by a sender under a lease
    # Not sent, for a reason on the operator's own side (credentials, configuration, an
    # unreachable or failing gateway): retried by every sender, and never counted as notice.
    BLOCKED = "blocked"
    SENT = "sent"  # accepted by the gateway
    DELIVERED = "delivered"  # the network confirmed delivery (a receipt, after sent)
    # The network reported it could not deliver it (a receipt, after sent, with its error code):
    # accepted by the gateway all the same, so final for notice as sent is.
    UNDELIVERED = "undelivered"
    # Refused for good for a reason about the subscriber's number (invalid, unsubscribed, not
    # mobile): the subscriber cannot be reached, so the attempt counts as notice.
    FAILED = "failed"
    CANCELLED = "cancelled"  # its cycle ended before it went out; never sent


# Still on its way to the subscriber: the nightly run gives such a cycle nothing more.
OPEN_STATES = (WarningState.PENDING, WarningState.SENDING, WarningState.BLOCKED)
# Final for the minimum-notice rule: the notice reached the network, or the number itself is
# what cannot be reached.
NOTICE_STATES = (
    WarningState.SENT,
    WarningState.DELIVERED,
    WarningState.UNDELIVERED,
    WarningState.FAILED,
)
# Final, yet the addressee was not reached: an owner's notice in one of these lets a request be
# approved only with a reason saying how the owner was reached instead.
UNREACHED_STATES = (WarningState.FAILED, WarningState.UNDELIVERED)
# No longer in the outbox: given notice, or cancelled before it went out.
SETTLED_STATES = (*NOTICE_STATES, WarningState.CANCELLED)
# What a sender may claim once it is due.
CLAIMABLE_STATES = (WarningState.PENDING, WarningState.BLOCKED)


class MessageKind(StrEnum):
    """What a message in the outbox is. Warnings belong to a number's cycle and speak of its
    grace end; an owner's notice belongs to no cycle (its cycle and stage are empty), so that
    nothing the cycle rules count (notice given, stages already warned) can ever include it."""

    WARNING = "warning"
    # To the number itself: a request to take the number from its owner has been made.
    OWNER_NOTICE = "owner_notice"


class RequestKind(StrEnum):
    """What a four-eyes request asks for; each is the ownership start cause it makes."""

    TRANSFER = "transfer"  # to a new owner, with both owners' consent
    REINSTATEMENT = "reinstatement"  # back to the recorded previous owner, taken from the holder


class RequestDecision(StrEnum):
    """How a request ended, by a person: one decision per request, never changed."""

    APPROVED = "approved"  # by someone other than the requester, and carried out
    REJECTED = "rejected"
    OBJECTED = "objected"  # the owner called the care line: the number is on hold


class RequestState(StrEnum):
    """Where a request stands: its decision, or pending, or expired without one."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    OBJECTED = "objected"
    EXPIRED = "expired"


class StaffRole(StrEnum):
    """What a signed-in person of the console may do."""

    AGENT = "agent"  # care: search, read, hold, open requests, record objections, sell
    SUPERVISOR = "supervisor"  # an agent who also approves or rejects requests, releases holds
    AUDITOR = "auditor"  # reads everything, changes nothing
    ADMIN = "admin"  # manages staff accounts, nothing else


class RunOutcome(StrEnum):
    """How a nightly run ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    WITHHELD = "withheld"  # done, but a guard withheld recycling
    # A date before the newest completed run: that run already did this date's work, so this
    # one changed nothing; it does not count as a night's work, good or bad.
    COVERED = "covered"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by a signal; kept nothing
    ABANDONED = "abandoned"  # its process died; found by a later run


def one_of(column: str, words: type[StrEnum]) -> str:
    """A CHECK constraint's SQL: the column holds one of the enumeration's values."""
    return f"{column} IN ({', '.join(repr(str(word)) for word in words)})"


class Verdict(StrEnum):
    """The reassigned check's answer, as the command line prints it."""

    SAME_OWNER = "no"  # the same owner since the date asked about
    REASSIGNED = "yes"  # a new owner since then, or none at all now
    BEFORE_RECORDS = "unknown"  # recycler's records of the number begin after that date


class Language(StrEnum):
    """The languages of the warning templates, as subscriber files and the base store them."""

    KHMER = "km"
    ENGLISH = "en"


class OwnershipStart(StrEnum):
    """How an ownership of a number began."""

    IMPORT = "import"  # the operator's subscriber file
    SEED = "seed"  # the synthetic demo base
    SALE = "sale"  # sold from the resale pool
    TRANSFER = "transfer"  # given by its owner to another, with both consents
    REINSTATEMENT = "reinstatement"  # given back to an earlier owner


class OwnershipEnd(StrEnum):
    """How an ownership of a number ended."""

    RECYCLE = "recycle"  # past its grace end: the number went to the resale pool
    TRANSFER = "transfer"
    REINSTATEMENT = "reinstatement"  # taken back for an earlier owner


class PoolLeave(StrEnum):
    """How a number left the resale pool."""

    SOLD = "sold"
    REINSTATED = "reinstated"  # given back to the owner the recycle took it from


class ImportKind(StrEnum):
    """What an import record is of."""

    SUBSCRIBERS = "subscribers"
    TOPUPS = "topups"
    SEED = "seed"


class AuditEvent(StrEnum):
    """The types of the audit events, the story of each number (append-only)."""

    BASE_SEEDED = "base.seeded"  # the demo base was written
    HOLD_PLACED = "hold.placed"  # care put the number on hold
    HOLD_RELEASED = "hold.released"
    NUMBER_RECYCLED = "number.recycled"  # the nightly run moved it to the resale pool
    OWNERSHIP_REINSTATED = (
        "ownership.reinstated"  # given back to an earlier owner (by care, or by a late top-up)
    )
    OWNERSHIP_SOLD = "ownership.sold"  # sold from the pool
    OWNERSHIP_STARTED = "ownership.started"  # an imported owner
    OWNERSHIP_TRANSFERRED = "ownership.transferred"
    RECYCLE_DEFERRED = "recycle.deferred"  # past grace, kept for want of notice
    TOPUP_APPLIED = "topup.applied"
    TOPUP_NOT_LATER = "topup.not_later"  # a top-up that did not move the validity end
    VALIDITY_EXTENDED = "validity.extended"  # a subscriber file moved the validity end later
    # The four-eyes workflow: a request to take a number from its owner, and its end.
    REQUEST_OPENED = "request.opened"
    REQUEST_APPROVED = "request.approved"
    REQUEST_REJECTED = "request.rejected"
    REQUEST_OBJECTED = "request.objected"
    REQUEST_REFUSED = "request.refused"  # not opened: the actor reached the day's limit
    NOTICE_SENT = "notice.sent"  # the owner's notice left, or failed for good
    NOTICE_FAILED = "notice.failed"
    NOTICE_DELIVERED = "notice.delivered"  # its receipt came back
    NOTICE_UNDELIVERED = "notice.undelivered"
    NOTICE_BLOCKED = "notice.blocked"
    NOTICE_CANCELLED = "notice.cancelled"
    # Staff and their sign-ins to the console (no number).
    STAFF_ADDED = "staff.added"
    STAFF_CHANGED = "staff.changed"  # role, disabled, password or second factor reset
    STAFF_SIGNED_IN = "staff.signed_in"
    STAFF_SIGN_IN_FAILED = "staff.sign_in_failed"
    STAFF_LOCKED = "staff.locked"  # too many failed sign-ins in a row
    STAFF_SIGNED_OUT = "staff.signed_out"
    WARNING_BLOCKED = "warning.blocked"
    WARNING_CANCELLED = "warning.cancelled"
    WARNING_FAILED = "warning.failed"
    WARNING_QUEUED = "warning.queued"
    WARNING_SENT = "warning.sent"
    WARNING_DELIVERED = "warning.delivered"  # the network's receipt: delivered
    WARNING_UNDELIVERED = "warning.undelivered"  # the network's receipt: not delivered
    WARNING_RECLASSIFIED = (
        "warning.reclassified"  # migration 0003: an operator-side failure is no notice
    )


class CycleEnd(StrEnum):
    """Why a number's cycle ended: the ``cancel_reason`` of its unsent warnings."""

    TOPPED_UP = "topped_up"
    VALIDITY_EXTENDED = "validity_extended"  # a subscriber file moved the validity end later
    RECYCLED = "recycled"
    SOLD = "sold"
    TRANSFERRED = "transferred"
    REINSTATED = "reinstated"
    HELD = "held"
    RELEASED = "released"
    # Claimed by a sender whose re-check found the cycle ended since it was queued.
    SUPERSEDED = "superseded"
    # An owner's notice not sent: its request was rejected or objected to first, or the number
    # no longer belongs to the owner it was written to.
    REQUEST_ENDED = "request_ended"
    OWNER_CHANGED = "owner_changed"


class ChangeAction(StrEnum):
    """What a safeguard operation did to a number, as its result says (``--json``'s action)."""

    HOLD = "hold"
    RELEASE = "release"
    SALE = "sale"
    TRANSFER = "transfer"  # an approved transfer request, carried out
    REINSTATEMENT = "reinstatement"  # out of the pool, or an approved forced reinstatement
    REJECTION = "rejection"
    OBJECTION = "objection"


class Guard(StrEnum):
    """The guards that withhold recycling for a whole run."""

    STALE_FEED = "stale_feed"
    MASS_RECYCLE = "mass_recycle"
