"""Writing audit events for a whole set of rows in one statement.

Every set-based change (a run's warnings and recycles, an import's top-ups, a sender's outcomes)
records its events with this one INSERT … SELECT, so an event always has the same shape: when,
what, which number, who, why, and whatever columns the change adds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.elements import ColumnElement

from jobs.database.schema import audit_events
from jobs.vocabulary import AuditEvent

__all__ = ["events_from", "record_events"]


def record_events(
    connection: Connection,
    source: FromClause,
    condition: ColumnElement[bool],
    *,
    now: datetime,
    actor: str,
    event_type: AuditEvent | ColumnElement[Any],
    msisdn: ColumnElement[Any],
    reason: str | ColumnElement[Any] | None = None,
    **columns: Any,
) -> int:
    """One audit event per row of `source` meeting the condition; returns how many.

    ``columns`` are further audit columns: SQL expressions over `source`, or plain values.
    """
    statement = events_from(
        source,
        condition,
        now=now,
        actor=actor,
        event_type=event_type,
        msisdn=msisdn,
        reason=reason,
        **columns,
    )
    result = connection.execution_options(preserve_rowcount=True).execute(statement)
    return result.rowcount


def events_from(
    source: FromClause,
    condition: ColumnElement[bool],
    *,
    now: datetime,
    actor: str,
    event_type: AuditEvent | ColumnElement[Any],
    msisdn: ColumnElement[Any],
    reason: str | ColumnElement[Any] | None = None,
    **columns: Any,
) -> sa.Insert:
    """The INSERT … SELECT of ``record_events``, not yet run: for a statement that writes its
    events from the rows another part of it changed (a data-modifying WITH on PostgreSQL)."""
    chosen: dict[str, Any] = {
        "occurred_at": sa.literal(now, audit_events.c.occurred_at.type),
        "event_type": event_type
        if isinstance(event_type, ColumnElement)
        else sa.literal(event_type.value),
        "msisdn": msisdn,
        "actor": sa.literal(actor),
        "reason": reason if isinstance(reason, ColumnElement) else sa.literal(reason, sa.Text),
        **{
            name: value if isinstance(value, ColumnElement) else sa.literal(value)
            for name, value in columns.items()
        },
    }
    return audit_events.insert().from_select(
        list(chosen), sa.select(*chosen.values()).select_from(source).where(condition)
    )
