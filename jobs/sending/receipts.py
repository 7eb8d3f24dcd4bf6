"""Delivery receipts: a sent warning becomes delivered or undelivered, once, and never goes back.

Receipts arrive over HTTP (``recycler api``: Twilio's status callbacks, Kannel's dlr-url), from
outside, at any time and in any order. The HTTP layer only keeps them (``keep_receipt``: an
append to ``delivery_receipts``); it can neither read nor change a warning. Senders apply them
(``apply_receipts``, in every claim round), under the same base lock as the rest of their work:

- a receipt moves only a ``sent`` message, to the outcome of the *first* final receipt ever kept
  for that message id: duplicates, and late or out-of-order callbacks, change nothing;
- a receipt that came before its message was recorded as sent (a gateway can report delivery
  within milliseconds of accepting a message, while the sender still waits to write the batch)
  waits, and is applied in a later round;
- a receipt for an id recycler never sent is set aside after an hour, applied to nothing.

Delivered and undelivered are final for the minimum-notice rule exactly as ``sent`` is
(``NOTICE_STATES``): the notice counts from the day the gateway accepted the message
(``final_on``, which a receipt never changes); the receipt's own day is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from jobs.database.audit import record_events
from jobs.database.schema import delivery_receipts, runs, warnings
from jobs.vocabulary import OPEN_STATES, AuditEvent, MessageKind, WarningState
from notifier.receipts import Receipt

__all__ = [
    "DELIVERY_OUTCOMES",
    "UNMATCHED_AFTER",
    "Deliveries",
    "apply_receipts",
    "deliveries_by_night",
    "keep_receipt",
]

log = structlog.get_logger(__name__)

# How long a receipt may wait for a message recycler has not recorded: longer than any sender
# takes to record what it sent, far shorter than anyone would wait for a statistic.
UNMATCHED_AFTER = timedelta(hours=1)
_BATCH = 500


def keep_receipt(
    connection: Connection,
    *,
    gateway: str,
    message_id: str,
    receipt: Receipt,
    now: datetime,
    today: date,
) -> bool:
    """Keep a final receipt for the senders to apply; returns whether it was final (a step in
    between, such as "accepted by the SMSC", says nothing new and is not kept)."""
    if receipt.outcome is None:
        return False
    # Parameters as a list of one row: SQLAlchemy then asks the sequence for no id first (a
    # round trip, for an id the API has no use for), as for the API's check records.
    connection.execute(
        delivery_receipts.insert(),
        [
            {
                "received_at": now,
                "received_on": today,
                "gateway": gateway,
                "message_id": message_id[:64],
                "status": receipt.status,
                "outcome": receipt.outcome.value,
                "error_code": receipt.error_code,
            }
        ],
    )
    return True


def apply_receipts(
    connection: Connection, *, now: datetime, actor: str, after: int = 0
) -> tuple[int, int | None]:
    """Apply up to a batch of the waiting receipts that follow receipt `after`; returns how
    many warnings they moved, and where the next batch starts (None: there is none). Receipts
    that must go on waiting (their message not sent yet) stay behind, so the next batch must
    start after them, not again at the first waiting one."""
    waiting = connection.execute(
        sa.select(delivery_receipts.c.id, delivery_receipts.c.message_id)
        .where(delivery_receipts.c.applied_at.is_(None), delivery_receipts.c.id > after)
        .order_by(delivery_receipts.c.id)
        .limit(_BATCH)
    ).all()
    if not waiting:
        return 0, None
    receipt_ids = [row.id for row in waiting]
    message_ids = sorted({row.message_id for row in waiting})
    moved = [
        row.id
        for row in connection.execute(
            sa.update(warnings)
            .where(
                warnings.c.gateway_message_id.in_(message_ids),
                warnings.c.state == WarningState.SENT,
            )
            .values(
                state=_first_receipt(delivery_receipts.c.outcome),
                receipt_at=_first_receipt(delivery_receipts.c.received_at),
                receipt_on=_first_receipt(delivery_receipts.c.received_on),
                receipt_code=_first_receipt(delivery_receipts.c.error_code),
            )
            .returning(warnings.c.id)
        )
    ]
    if moved:
        _audit(connection, moved, now=now, actor=actor)
    # Done with: a receipt whose message has gone past sent (applied now, or final already),
    # or one no message of recycler's has claimed for an hour.
    message = (
        sa.select(warnings.c.id)
        .where(warnings.c.gateway_message_id == delivery_receipts.c.message_id)
        .order_by(warnings.c.id.desc())
        .limit(1)
        .correlate(delivery_receipts)
        .scalar_subquery()
    )
    # Sent counts as still to do: on PostgreSQL each statement sees what committed before it,
    # so a message a sender recorded as sent just after the update above must keep its
    # receipt waiting for the next round, not lose it.
    still_open = (
        sa.exists()
        .where(
            warnings.c.gateway_message_id == delivery_receipts.c.message_id,
            warnings.c.state.in_((*OPEN_STATES, WarningState.SENT)),
        )
        .correlate(delivery_receipts)
    )
    settled = connection.execute(
        sa.update(delivery_receipts)
        .where(
            delivery_receipts.c.id.in_(receipt_ids),
            sa.or_(
                sa.and_(message.is_not(None), ~still_open),
                sa.and_(message.is_(None), delivery_receipts.c.received_at < now - UNMATCHED_AFTER),
            ),
        )
        .values(applied_at=now, warning_id=message)
        .returning(
            delivery_receipts.c.gateway,
            delivery_receipts.c.message_id,
            delivery_receipts.c.warning_id,
        )
    ).all()
    for row in settled:
        if row.warning_id is None:
            log.warning("receipt.unknown_message", gateway=row.gateway, message=row.message_id)
    return len(moved), (receipt_ids[-1] if len(waiting) == _BATCH else None)


def _first_receipt(column: sa.Column[object]) -> ColumnElement[object]:
    """A column of the first final receipt kept for the warning's message."""
    return (
        sa.select(column)
        .where(delivery_receipts.c.message_id == warnings.c.gateway_message_id)
        .order_by(delivery_receipts.c.id)
        .limit(1)
        .correlate(warnings)
        .scalar_subquery()
    )


def _audit(connection: Connection, moved: list[int], *, now: datetime, actor: str) -> None:
    notice = warnings.c.kind == MessageKind.OWNER_NOTICE
    delivered = warnings.c.state == WarningState.DELIVERED
    record_events(
        connection,
        warnings,
        warnings.c.id.in_(moved),
        now=now,
        actor=actor,
        event_type=sa.case(
            (sa.and_(notice, delivered), sa.literal(AuditEvent.NOTICE_DELIVERED.value)),
            (notice, sa.literal(AuditEvent.NOTICE_UNDELIVERED.value)),
            (delivered, sa.literal(AuditEvent.WARNING_DELIVERED.value)),
            else_=sa.literal(AuditEvent.WARNING_UNDELIVERED.value),
        ),
        msisdn=warnings.c.msisdn,
        reason=sa.case(
            (delivered, sa.literal("the network reported it delivered")),
            else_=sa.literal("the network reported it not delivered (error ")
            + sa.func.coalesce(warnings.c.receipt_code, sa.literal("none given"))
            + sa.literal(")"),
        ),
        owner_id=warnings.c.owner_id,
        cycle=warnings.c.cycle,
        stage=warnings.c.stage,
        warning_id=warnings.c.id,
    )


# What became of a night's accepted warnings, as Deliveries counts it (and metrics label it).
DELIVERY_OUTCOMES = ("delivered", "undelivered", "no_receipt", "awaiting_receipt", "failed")


@dataclass(frozen=True)
class Deliveries:
    """What became of one night's warnings of one stage, once the gateway had them."""

    night: date
    run_id: int
    stage: int
    delivered: int
    undelivered: int
    no_receipt: int  # sent, and no receipt in receipt_wait_hours: it will not come now
    awaiting_receipt: int  # sent, still inside receipt_wait_hours
    failed: int  # refused for the number itself; never reached the network

    @property
    def accepted(self) -> int:
        """Handed to the network: every message a receipt could come for."""
        return self.delivered + self.undelivered + self.no_receipt + self.awaiting_receipt

    @property
    def delivered_share(self) -> float | None:
        """Delivered among those accepted whose receipt is in or overdue (None: none yet)."""
        settled = self.delivered + self.undelivered + self.no_receipt
        return round(self.delivered / settled, 4) if settled else None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable row."""
        return {
            "night": self.night.isoformat(),
            "run_id": self.run_id,
            "stage": self.stage,
            "accepted": self.accepted,
            "delivered": self.delivered,
            "undelivered": self.undelivered,
            "no_receipt": self.no_receipt,
            "awaiting_receipt": self.awaiting_receipt,
            "failed": self.failed,
            "delivered_share": self.delivered_share,
        }


def deliveries_by_night(
    connection: Connection, *, now: datetime, wait: timedelta, nights: int = 7
) -> list[Deliveries]:
    """The delivery figures of the warnings queued by the last `nights` real runs, per night
    and stage, newest night first (found by the runs' index on warnings: a few nights' rows,
    however long the history)."""
    recent = (
        sa.select(runs.c.id)
        .where(runs.c.dry_run.is_(sa.false()))
        .order_by(runs.c.id.desc())
        .limit(nights)
        .scalar_subquery()
    )
    state = warnings.c.state
    sent = state == WarningState.SENT
    overdue = warnings.c.final_at < now - wait
    rows = connection.execute(
        sa.select(
            runs.c.id,
            runs.c.as_of,
            warnings.c.stage,
            sa.func.count().filter(state == WarningState.DELIVERED),
            sa.func.count().filter(state == WarningState.UNDELIVERED),
            sa.func.count().filter(sent, overdue),
            sa.func.count().filter(sent, ~overdue),
            sa.func.count().filter(state == WarningState.FAILED),
        )
        .select_from(warnings.join(runs, runs.c.id == warnings.c.queued_by_run_id))
        .where(warnings.c.queued_by_run_id.in_(recent), warnings.c.kind == MessageKind.WARNING)
        .group_by(runs.c.id, runs.c.as_of, warnings.c.stage)
        .order_by(runs.c.id.desc(), warnings.c.stage.desc())
    ).all()
    return [Deliveries(row[1], row[0], *row[2:]) for row in rows]
