"""The outbox's statements: claim due warnings, cancel superseded ones, record what happened.

A claim marks a batch ``sending`` under a token and a lease. On PostgreSQL it picks rows with
``FOR UPDATE SKIP LOCKED`` so that any number of senders share the work, and it takes back claims
whose lease expired (a sender that died). Every later statement names the token, so a sender whose
claim was taken back cannot overwrite the new claimant's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.database.audit import record_events
from jobs.database.schema import numbers, warnings

__all__ = [
    "Claimed",
    "Delivery",
    "Depth",
    "cancel_superseded",
    "claim",
    "depth",
    "record_failures",
    "record_retries",
    "record_sent",
    "release",
]


@dataclass(frozen=True)
class Claimed:
    """A warning claimed for sending."""

    warning_id: int
    msisdn: str
    text: str
    encoding: str
    segments: int
    attempts: int  # including this one


@dataclass(frozen=True)
class Delivery:
    """The outcome of one send attempt, under the claim token it was sent with."""

    warning_id: int
    token: str
    gateway_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class Depth:
    """How many warnings are in each state, and when the oldest pending one was queued."""

    by_state: dict[str, int]
    oldest_pending: datetime | None


def depth(connection: Connection) -> Depth:
    """The outbox's figures, for status and metrics."""
    by_state = {
        state: count
        for state, count in connection.execute(
            sa.select(warnings.c.state, sa.func.count()).group_by(warnings.c.state)
        )
    }
    oldest = connection.execute(
        sa.select(sa.func.min(warnings.c.queued_at)).where(warnings.c.state == "pending")
    ).scalar()
    return Depth(by_state, oldest)


def claim(
    connection: Connection, *, token: str, now: datetime, lease_until: datetime, limit: int
) -> list[Claimed]:
    """Claim up to `limit` due warnings (oldest first) and return them."""
    due = sa.or_(
        sa.and_(warnings.c.state == "pending", warnings.c.next_attempt_at <= now),
        sa.and_(warnings.c.state == "sending", warnings.c.lease_expires_at < now),
    )
    # A materialised CTE is evaluated exactly once; as an IN-subquery PostgreSQL may run the
    # LIMIT … SKIP LOCKED selection again per row and claim more than asked.
    chosen = (
        sa.select(warnings.c.id)
        .where(due)
        .order_by(warnings.c.next_attempt_at, warnings.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("chosen")
    )
    if connection.dialect.name == "postgresql":
        chosen = chosen.prefix_with("MATERIALIZED")
    rows = connection.execute(
        sa.update(warnings)
        .where(warnings.c.id == chosen.c.id, due)
        .values(
            state="sending",
            claimed_by=token,
            lease_expires_at=lease_until,
            attempts=warnings.c.attempts + 1,
        )
        .returning(
            warnings.c.id,
            warnings.c.msisdn,
            warnings.c.text,
            warnings.c.encoding,
            warnings.c.segments,
            warnings.c.attempts,
        )
    )
    claimed = [
        Claimed(row.id, row.msisdn, row.text, row.encoding, row.segments, row.attempts)
        for row in rows
    ]
    return sorted(claimed, key=lambda item: item.warning_id)


def cancel_superseded(connection: Connection, *, token: str, now: datetime, actor: str) -> set[int]:
    """Cancel the claimed warnings whose cycle has ended (top-up, recycle, hold) since they were
    queued; they must never reach the subscriber. Returns their ids."""
    current = (
        sa.exists()
        .where(
            numbers.c.msisdn == warnings.c.msisdn,
            numbers.c.cycle == warnings.c.cycle,
            numbers.c.owner_id.is_not(None),
            numbers.c.on_hold.is_(sa.false()),
        )
        .correlate(warnings)
    )
    superseded = sa.and_(
        warnings.c.claimed_by == token,
        warnings.c.state == "cancelled",
        warnings.c.cancel_reason == "superseded",
    )
    rows = connection.execute(
        sa.update(warnings)
        .where(warnings.c.claimed_by == token, warnings.c.state == "sending", ~current)
        .values(state="cancelled", cancel_reason="superseded", lease_expires_at=None)
        .returning(warnings.c.id)
    )
    cancelled = {row.id for row in rows}
    if cancelled:
        record_events(
            connection,
            warnings,
            superseded,
            now=now,
            actor=actor,
            event_type="warning.cancelled",
            msisdn=warnings.c.msisdn,
            reason="its cycle ended before it was sent (top-up, recycle or hold)",
            owner_id=warnings.c.owner_id,
            cycle=warnings.c.cycle,
            stage=warnings.c.stage,
            warning_id=warnings.c.id,
        )
    return cancelled


def record_sent(
    connection: Connection,
    *,
    deliveries: Sequence[Delivery],
    now: datetime,
    today: date,
    actor: str,
) -> int:
    """Mark warnings accepted by the gateway; returns how many were still ours to mark."""
    if not deliveries:
        return 0
    connection.execute(
        _OURS.values(
            state="sent",
            gateway_message_id=sa.bindparam("gateway_message_id"),
            final_at=now,
            final_on=today,
            lease_expires_at=None,
            error_code=None,
            error_message=None,
        ),
        [
            {
                "warning_id": item.warning_id,
                "token": item.token,
                "gateway_message_id": item.gateway_message_id,
            }
            for item in deliveries
        ],
    )
    return _audit_outcome(connection, deliveries, "sent", "warning.sent", now, actor)


def record_retries(connection: Connection, *, deliveries: Sequence[Delivery]) -> None:
    """Put warnings back in the queue for a later attempt after a passing gateway error."""
    if not deliveries:
        return
    connection.execute(
        _OURS.values(
            state="pending",
            next_attempt_at=sa.bindparam("next_attempt_at"),
            lease_expires_at=None,
            claimed_by=None,
            error_code=sa.bindparam("error_code"),
            error_message=sa.bindparam("error_message"),
        ),
        [
            {
                "warning_id": item.warning_id,
                "token": item.token,
                "next_attempt_at": item.next_attempt_at,
                "error_code": item.error_code,
                "error_message": item.error_message,
            }
            for item in deliveries
        ],
    )


def record_failures(
    connection: Connection,
    *,
    deliveries: Sequence[Delivery],
    now: datetime,
    today: date,
    actor: str,
) -> int:
    """Mark warnings failed for good, with the gateway's code. Failed is final: the subscriber
    cannot be reached, and the minimum-notice rule counts the attempt."""
    if not deliveries:
        return 0
    connection.execute(
        _OURS.values(
            state="failed",
            final_at=now,
            final_on=today,
            lease_expires_at=None,
            error_code=sa.bindparam("error_code"),
            error_message=sa.bindparam("error_message"),
        ),
        [
            {
                "warning_id": item.warning_id,
                "token": item.token,
                "error_code": item.error_code,
                "error_message": item.error_message,
            }
            for item in deliveries
        ],
    )
    return _audit_outcome(connection, deliveries, "failed", "warning.failed", now, actor)


def release(connection: Connection, *, tokens: Sequence[str]) -> int:
    """Give back every warning still claimed under these tokens, unsent, for another sender.
    The attempt it was claimed for never happened, so it does not count."""
    if not tokens:
        return 0
    result = connection.execute(
        sa.update(warnings)
        .where(warnings.c.claimed_by.in_(tokens), warnings.c.state == "sending")
        .values(
            state="pending",
            lease_expires_at=None,
            claimed_by=None,
            attempts=warnings.c.attempts - 1,
        )
    )
    return result.rowcount


# A result is recorded only if the warning is still claimed under the token it was sent with:
# a sender whose lease expired must not overwrite the outcome of the sender that took over.
_OURS = sa.update(warnings).where(
    warnings.c.id == sa.bindparam("warning_id"),
    warnings.c.claimed_by == sa.bindparam("token"),
    warnings.c.state == "sending",
)


def _audit_outcome(
    connection: Connection,
    deliveries: Sequence[Delivery],
    state: str,
    event_type: str,
    now: datetime,
    actor: str,
) -> int:
    """One audit event per warning of the batch that reached `state` under this claim."""
    return record_events(
        connection,
        warnings,
        sa.and_(
            warnings.c.id.in_([item.warning_id for item in deliveries]),
            warnings.c.claimed_by.in_({item.token for item in deliveries}),
            warnings.c.state == state,
        ),
        now=now,
        actor=actor,
        event_type=event_type,
        msisdn=warnings.c.msisdn,
        reason=sa.case(
            (
                warnings.c.error_code.is_not(None),
                sa.literal("gateway error ") + warnings.c.error_code,
            ),
            else_=warnings.c.gateway_message_id,
        ),
        owner_id=warnings.c.owner_id,
        cycle=warnings.c.cycle,
        stage=warnings.c.stage,
        warning_id=warnings.c.id,
    )
