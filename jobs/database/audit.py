"""Writing audit events for a whole set of rows in one statement.

Every set-based change (a run's warnings and recycles, an import's top-ups, a sender's outcomes)
records its events with this one INSERT … SELECT, so an event always has the same shape: when,
what, which number, who, why, and whatever columns the change adds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Concatenate, ParamSpec

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.elements import ColumnElement

from jobs.database.schema import audit_events
from jobs.vocabulary import AuditEvent

__all__ = ["events_from", "record_events"]

Parameters = ParamSpec("Parameters")


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
    """One audit event per row of `source` meeting the condition, as an INSERT … SELECT not yet
    run (``record_events`` runs it; a statement may also write its events from the rows another
    part of it changed, as a data-modifying WITH on PostgreSQL).

    ``columns`` are further audit columns: SQL expressions over `source`, or plain values.
    """
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


def _run_on(
    build: Callable[Parameters, sa.Insert],
) -> Callable[Concatenate[Connection, Parameters], int]:
    """The statement ``build`` makes, run on a connection; returns how many rows it wrote."""

    def run(connection: Connection, /, *args: Parameters.args, **kwargs: Parameters.kwargs) -> int:
        statement = build(*args, **kwargs)
        return connection.execution_options(preserve_rowcount=True).execute(statement).rowcount

    return run


# ``events_from``'s events written at once, on a connection (its first argument); returns how
# many. Same arguments as ``events_from`` after the connection, checked as such.
record_events = _run_on(events_from)
