"""Console sessions: a random token in an HttpOnly cookie, kept in the database only as its
SHA-256 hash, with the CSRF token every form of the session carries. A session ends when its
person signs out, after 30 minutes without a request, 12 hours after sign-in, or when the
account is disabled or reset."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from jobs.database.engine import Database
from jobs.database.schema import audit_events, staff, staff_sessions
from jobs.staff.accounts import StaffMember, member_of
from jobs.vocabulary import AuditEvent

__all__ = ["ABSOLUTE", "IDLE", "Session", "end_session", "find_session", "start_session"]

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)


@dataclass(frozen=True)
class Session:
    """A signed-in person, as each request finds them."""

    token: str
    member: StaffMember
    csrf_token: str
    started_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(database: Database, member: StaffMember, *, now: datetime) -> Session:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with database.write() as connection:
        connection.execute(
            staff_sessions.insert().values(
                token_hash=_hash(token),
                staff_id=member.id,
                csrf_token=csrf,
                started_at=now,
                last_seen_at=now,
            )
        )
    return Session(token, member, csrf, now)


def find_session(database: Database, token: str | None, *, now: datetime) -> Session | None:
    """The live session of this cookie, its idle clock restarted; None if there is none."""
    if not token:
        return None
    with database.write() as connection:
        # The person's row as it is now (a role changed since the sign-in counts at once), with
        # the few columns of the session that decide whether it still lives.
        row = connection.execute(
            sa.select(
                staff,
                staff_sessions.c.csrf_token,
                staff_sessions.c.started_at,
                staff_sessions.c.last_seen_at,
                staff_sessions.c.ended_at,
            )
            .join(staff, staff.c.id == staff_sessions.c.staff_id)
            .where(staff_sessions.c.token_hash == _hash(token))
        ).first()
        if row is None or row.ended_at is not None:
            return None
        expired = (
            row.last_seen_at + IDLE <= now
            or row.started_at + ABSOLUTE <= now
            or row.disabled_at is not None
        )
        if expired:
            connection.execute(
                sa.update(staff_sessions)
                .where(staff_sessions.c.token_hash == _hash(token))
                .values(ended_at=now)
            )
            return None
        connection.execute(
            sa.update(staff_sessions)
            .where(staff_sessions.c.token_hash == _hash(token))
            .values(last_seen_at=now)
        )
    return Session(token, member_of(row), row.csrf_token, row.started_at)


def end_session(database: Database, session: Session, *, now: datetime) -> None:
    with database.write() as connection:
        connection.execute(
            sa.update(staff_sessions)
            .where(staff_sessions.c.token_hash == _hash(session.token))
            .values(ended_at=now)
        )
        connection.execute(
            audit_events.insert().values(
                occurred_at=now,
                event_type=AuditEvent.STAFF_SIGNED_OUT,
                actor=session.member.username,
                reason="signed out",
            )
        )
