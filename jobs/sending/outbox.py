"""The outbox's statements: claim due warnings, cancel superseded ones, record what happened.

A claim marks a batch ``sending`` under a token and a lease. On PostgreSQL it picks rows with
``FOR UPDATE SKIP LOCKED`` so that any number of senders share the work, and it takes back claims
whose lease expired (a sender that died). Every later statement names the token, so a sender whose
claim was taken back cannot overwrite the new claimant's result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from jobs.database.audit import record_events
from jobs.database.schema import numbers, runs, warnings
from jobs.vocabulary import (
    CLAIMABLE_STATES,
    SETTLED_STATES,
    AuditEvent,
    CycleEnd,
    MessageKind,
    WarningState,
)

__all__ = [
    "Claimed",
    "Delivery",
    "Depth",
    "cancel_superseded",
    "claim",
    "depth",
    "record_outcomes",
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
    """The outcome of one send attempt, under the claim token it was sent with: the state it
    leaves the warning in (sent, failed, pending again, or blocked)."""

    warning_id: int
    token: str
    state: WarningState
    gateway_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    # When it may be tried again, counted from the moment the outcome is recorded (by the
    # database's clock, like every decision about claims).
    retry_in: timedelta | None = None
    # False when the gateway could not be used at all: the message was never really tried.
    attempt_counts: bool = True


@dataclass(frozen=True)
class Depth:
    """What waits in the outbox now (pending, sending, blocked: all of it, however old), when
    the oldest pending message was queued, and what became of the newest night's warnings
    (sent, delivered, undelivered, failed, cancelled)."""

    by_state: dict[str, int]
    oldest_pending: datetime | None
    night: date | None = None  # of the newest night that queued warnings: the final counts'


def depth(connection: Connection) -> Depth:
    """The outbox's figures, for status and metrics.

    Every message ever sent stays in the table for years (the assignment history), so the
    figures are counted where their cost does not grow with it: the waiting states through
    their partial indexes (ix_warnings_due, ix_warnings_in_flight), the final states among
    the newest night's warnings through the runs' index. Counting every state over the whole
    table took a scan of all the history on every status and every metrics refresh.
    """
    by_state: dict[str, int] = {}
    for waiting in (
        warnings.c.state.in_(CLAIMABLE_STATES),
        warnings.c.state == WarningState.SENDING,
    ):
        for state, count in connection.execute(
            sa.select(warnings.c.state, sa.func.count()).where(waiting).group_by(warnings.c.state)
        ):
            by_state[state] = count
    # The newest night that queued warnings (by the runs' index on warnings: its last entry),
    # not merely the newest run: a run covered by a later one, or one that failed, queues none.
    newest = connection.execute(
        sa.select(runs.c.id, runs.c.as_of).where(
            runs.c.id == sa.select(sa.func.max(warnings.c.queued_by_run_id)).scalar_subquery()
        )
    ).first()
    if newest is not None:
        for state, count in connection.execute(
            sa.select(warnings.c.state, sa.func.count())
            .where(
                warnings.c.queued_by_run_id == newest.id,
                warnings.c.state.in_(SETTLED_STATES),
            )
            .group_by(warnings.c.state)
        ):
            by_state[state] = count
    oldest = connection.execute(
        sa.select(sa.func.min(warnings.c.queued_at)).where(warnings.c.state == WarningState.PENDING)
    ).scalar()
    return Depth(by_state, oldest, newest.as_of if newest is not None else None)


def claim(
    connection: Connection,
    *,
    token: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    drain: str | None = None,
) -> list[Claimed]:
    """Claim up to `limit` due warnings (oldest first) and return them.

    A warning this `drain` (a prefix of its claim tokens) blocked itself is not taken again by
    the same drain: it is for the next one, once the operator has had a chance to act.
    """
    due = sa.or_(
        sa.and_(warnings.c.state.in_(CLAIMABLE_STATES), warnings.c.next_attempt_at <= now),
        sa.and_(warnings.c.state == WarningState.SENDING, warnings.c.lease_expires_at < now),
    )
    if drain is not None:
        due = sa.and_(
            due,
            ~sa.and_(
                warnings.c.state == WarningState.BLOCKED,
                warnings.c.claimed_by.startswith(drain, autoescape=True),
            ),
        )
    # Two statements: the ids first (locked, at most `limit`), then the update of those ids
    # by primary key. As one statement (an UPDATE joined to the selection), the planner could
    # compare every chosen id with every due warning, which on a first night with no
    # statistics is the whole outbox for each claim (tests/integration/test_query_plans.py).
    # Owners' notices first, by their own index: a notice of a request to take a number must
    # not wait behind a night of warnings.
    notices = _due_ids(connection, sa.and_(due, _NOTICE), limit)
    chosen = notices + (
        _due_ids(
            connection, sa.and_(due, warnings.c.kind == MessageKind.WARNING), limit - len(notices)
        )
        if len(notices) < limit
        else []
    )
    if not chosen:
        return []
    rows = connection.execute(
        sa.update(warnings)
        .where(warnings.c.id.in_(chosen))
        .values(
            state=WarningState.SENDING,
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
    first = set(notices)
    return sorted(claimed, key=lambda item: (item.warning_id not in first, item.warning_id))


# Written into the statement, not bound: the planner matches a partial index's predicate only
# against values it can see (a prepared statement's generic plan sees none).
_NOTICE = warnings.c.kind == sa.literal(MessageKind.OWNER_NOTICE.value, literal_execute=True)


def _due_ids(connection: Connection, due: ColumnElement[bool], limit: int) -> list[int]:
    """The ids of up to `limit` due messages, oldest first, locked for this claim."""
    return list(
        connection.execute(
            sa.select(warnings.c.id)
            .where(due)
            .order_by(warnings.c.next_attempt_at, warnings.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )


def cancel_superseded(connection: Connection, *, token: str, now: datetime, actor: str) -> set[int]:
    """Cancel the claimed warnings whose cycle has ended (top-up, recycle, hold) since they were
    queued, and the owners' notices whose number has another owner (or none) now: they must
    never reach whoever has the number now. Returns their ids."""
    current = sa.or_(
        sa.exists()
        .where(
            numbers.c.msisdn == warnings.c.msisdn,
            numbers.c.cycle == warnings.c.cycle,
            numbers.c.owner_id.is_not(None),
            numbers.c.on_hold.is_(sa.false()),
        )
        .correlate(warnings),
        # A notice belongs to no cycle: it goes while its addressee holds the number, held or
        # not (an objection puts the number on hold; the owner still hears of the request).
        sa.exists()
        .where(
            warnings.c.kind == MessageKind.OWNER_NOTICE,
            numbers.c.msisdn == warnings.c.msisdn,
            numbers.c.owner_id == warnings.c.owner_id,
        )
        .correlate(warnings),
    )
    superseded = sa.and_(
        warnings.c.claimed_by == token,
        warnings.c.state == WarningState.CANCELLED,
        warnings.c.cancel_reason.in_((CycleEnd.SUPERSEDED, CycleEnd.OWNER_CHANGED)),
    )
    rows = connection.execute(
        sa.update(warnings)
        .where(warnings.c.claimed_by == token, warnings.c.state == WarningState.SENDING, ~current)
        .values(
            state=WarningState.CANCELLED,
            cancel_reason=sa.case(
                (_NOTICE, sa.literal(CycleEnd.OWNER_CHANGED.value)),
                else_=sa.literal(CycleEnd.SUPERSEDED.value),
            ),
            lease_expires_at=None,
        )
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
            event_type=_by_kind(AuditEvent.WARNING_CANCELLED, AuditEvent.NOTICE_CANCELLED),
            msisdn=warnings.c.msisdn,
            reason=sa.case(
                (_NOTICE, sa.literal("the number changed owner before the notice was sent")),
                else_=sa.literal("its cycle ended before it was sent (top-up, recycle or hold)"),
            ),
            owner_id=warnings.c.owner_id,
            cycle=warnings.c.cycle,
            stage=warnings.c.stage,
            warning_id=warnings.c.id,
        )
    return cancelled


def record_outcomes(
    connection: Connection,
    *,
    deliveries: Sequence[Delivery],
    now: datetime,
    today: date,
    actor: str,
) -> dict[WarningState, int]:
    """Record a batch of send attempts, each only if the warning is still claimed under the token
    it was sent with; returns how many reached each state.

    Sent and failed are final (the local date is kept: the minimum-notice rule counts from it);
    pending goes back in the queue for a later attempt; blocked waits for the operator, and
    its attempt does not count towards ``max_attempts`` when the gateway was never usable.
    """
    recorded: dict[WarningState, int] = {}
    for state, values in _OUTCOME_VALUES.items():
        chosen = [item for item in deliveries if item.state is state]
        if not chosen:
            continue
        connection.execute(
            _OURS.values(
                state=state,
                lease_expires_at=None,
                error_code=sa.bindparam("new_error_code"),
                error_message=sa.bindparam("new_error_message"),
                **values(now, today),
            ),
            # Parameter names that are not column names: SQLAlchemy would add those to the SET.
            [
                {
                    "warning_id": item.warning_id,
                    "token": item.token,
                    "new_message_id": item.gateway_message_id,
                    "new_error_code": item.error_code,
                    "new_error_message": item.error_message,
                    "new_next_attempt_at": now + (item.retry_in or timedelta(0)),
                    "uncounted": 0 if item.attempt_counts else 1,
                }
                for item in chosen
            ],
        )
        events = _OUTCOME_EVENTS.get(state)
        recorded[state] = (
            _audit_outcome(connection, chosen, state, _by_kind(*events), now, actor)
            if events is not None
            else len(chosen)
        )
    return recorded


_OUTCOME_VALUES: dict[WarningState, Callable[[datetime, date], dict[str, Any]]] = {
    WarningState.SENT: lambda now, today: {
        "gateway_message_id": sa.bindparam("new_message_id"),
        "final_at": now,
        "final_on": today,
    },
    WarningState.FAILED: lambda now, today: {"final_at": now, "final_on": today},
    WarningState.PENDING: lambda _now, _today: {
        "next_attempt_at": sa.bindparam("new_next_attempt_at"),
        "claimed_by": None,
    },
    # The sender that tried last stays named: its audit event finds the warning by it.
    WarningState.BLOCKED: lambda _now, _today: {
        "next_attempt_at": sa.bindparam("new_next_attempt_at"),
        "attempts": warnings.c.attempts - sa.bindparam("uncounted"),
    },
}
# The outcomes that are audited one by one (a retry is not: the warning is still on its way).
_OUTCOME_EVENTS = {
    WarningState.SENT: (AuditEvent.WARNING_SENT, AuditEvent.NOTICE_SENT),
    WarningState.FAILED: (AuditEvent.WARNING_FAILED, AuditEvent.NOTICE_FAILED),
    WarningState.BLOCKED: (AuditEvent.WARNING_BLOCKED, AuditEvent.NOTICE_BLOCKED),
}


def _by_kind(warning: AuditEvent, notice: AuditEvent) -> ColumnElement[str]:
    """The audit event type of a message, by its kind: a warning's or an owner notice's."""
    return sa.case((_NOTICE, sa.literal(notice.value)), else_=sa.literal(warning.value))


def release(connection: Connection, *, tokens: Sequence[str]) -> int:
    """Give back every warning still claimed under these tokens, unsent, for another sender.
    The attempt it was claimed for never happened, so it does not count."""
    if not tokens:
        return 0
    result = connection.execute(
        sa.update(warnings)
        .where(warnings.c.claimed_by.in_(tokens), warnings.c.state == WarningState.SENDING)
        .values(
            state=WarningState.PENDING,
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
    warnings.c.state == WarningState.SENDING,
)


def _audit_outcome(
    connection: Connection,
    deliveries: Sequence[Delivery],
    state: WarningState,
    event_type: ColumnElement[str],
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
                warnings.c.state == WarningState.BLOCKED,
                sa.literal("not sent, on the operator's side (gateway error ")
                + warnings.c.error_code
                + sa.literal("); every sender tries it again"),
            ),
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
