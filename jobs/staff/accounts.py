"""Staff accounts: who they are, their role, how they prove it.

A password is kept only as an Argon2id hash (argon2-cffi); the one printed by ``staff add`` and
``staff reset`` is temporary, to be changed at the first sign-in. Each account has a TOTP secret
(pyotp), whose code is required at sign-in for supervisors and admins, and for anyone whose
account was made with ``--totp``; a code is accepted once. Five failed sign-ins in a row lock
the account for fifteen minutes. Every addition, change, sign-in, failure and lockout is an
audit event.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from jobs.database.engine import Database
from jobs.database.schema import audit_events, staff, staff_sessions
from jobs.errors import InputRefused
from jobs.vocabulary import AuditEvent, StaffRole

__all__ = [
    "ISSUER",
    "LOCK_AFTER",
    "LOCK_FOR",
    "NewSecret",
    "SignInRefused",
    "StaffMember",
    "add_staff",
    "authenticate",
    "change_password",
    "disable_staff",
    "list_staff",
    "member_of",
    "reset_staff",
    "set_role",
]

ISSUER = "recycler"  # the name authenticator apps show beside the account
LOCK_AFTER = 5  # failed sign-ins in a row
LOCK_FOR = timedelta(minutes=15)
MINIMUM_PASSWORD = 12
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
_HASHER = PasswordHasher()  # Argon2id with the library's recommended cost
# The roles whose sign-in always asks for the second factor.
_TOTP_ALWAYS = frozenset({StaffRole.SUPERVISOR, StaffRole.ADMIN})


class SignInRefused(InputRefused):
    """The same answer for every failure (no such person, wrong password, wrong code, locked,
    disabled): which one it was is in the audit, not on the page."""

    def __init__(self) -> None:
        super().__init__("the username, password or code is not right, or the account is locked")


@functools.cache
def _dummy_hash() -> str:
    """Verified against for an unknown username, so that it costs as long as a known one."""
    return _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class StaffMember:
    """An account as people see it (never its secrets)."""

    id: int
    username: str
    role: StaffRole
    totp_required: bool
    password_is_temporary: bool
    locked_until: datetime | None
    disabled_at: datetime | None
    created_at: datetime
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "role": str(self.role),
            "totp_required": self.totp_required,
            "password_is_temporary": self.password_is_temporary,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
            "disabled": self.disabled_at is not None,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class NewSecret:
    """What ``staff add`` and ``staff reset`` print once: nowhere else is it kept."""

    member: StaffMember
    password: str
    totp_uri: str

    def to_json(self) -> dict[str, Any]:
        return {**self.member.to_json(), "password": self.password, "totp_uri": self.totp_uri}


def member_of(row: sa.Row[Any]) -> StaffMember:
    return StaffMember(
        id=row.id,
        username=row.username,
        role=StaffRole(row.role),
        totp_required=row.totp_required,
        password_is_temporary=row.password_is_temporary,
        locked_until=row.locked_until,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _audit(
    connection: Connection,
    event: AuditEvent,
    now: datetime,
    actor: str,
    reason: str,
    **details: Any,
) -> None:
    connection.execute(
        audit_events.insert().values(
            occurred_at=now, event_type=event, actor=actor, reason=reason, details=details
        )
    )


def _role(text: str) -> StaffRole:
    try:
        return StaffRole(text)
    except ValueError:
        raise InputRefused(
            f"unknown role {text!r} (expected {', '.join(str(role) for role in StaffRole)})"
        ) from None


def _uri(username: str, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def add_staff(
    database: Database, username: str, role: str, *, totp: bool, actor: str, now: datetime
) -> NewSecret:
    """A new account with a temporary password and a TOTP secret, both shown once."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise InputRefused(
            f"username {username!r}: 2 to 64 characters, a letter first, then letters, digits, "
            "dots, dashes or underscores"
        )
    chosen = _role(role)
    password = secrets.token_urlsafe(12)
    secret = pyotp.random_base32()
    with database.write() as connection:
        taken = connection.execute(
            sa.select(staff.c.id).where(staff.c.username == username)
        ).first()
        if taken is not None:
            raise InputRefused(f"there is already a staff account {username}")
        row = connection.execute(
            staff.insert()
            .values(
                username=username,
                role=chosen,
                password_hash=_HASHER.hash(password),
                password_is_temporary=True,
                totp_secret=secret,
                totp_required=totp or chosen in _TOTP_ALWAYS,
                created_at=now,
                created_by=actor,
            )
            .returning(*staff.c)
        ).one()
        _audit(connection, AuditEvent.STAFF_ADDED, now, actor, f"{username} as {chosen}",
               username=username, role=str(chosen))  # fmt: skip
    return NewSecret(member_of(row), password, _uri(username, secret))


def list_staff(database: Database) -> list[StaffMember]:
    with database.read() as connection:
        return [member_of(row) for row in connection.execute(sa.select(staff).order_by(staff.c.id))]


def _one(connection: Connection, username: str) -> sa.Row[Any]:
    row = connection.execute(
        sa.select(staff).where(staff.c.username == username.strip().lower()).with_for_update()
    ).first()
    if row is None:
        raise InputRefused(f"there is no staff account {username}")
    return row


def _changed(
    connection: Connection, row: sa.Row[Any], now: datetime, actor: str, what: str, **values: Any
) -> StaffMember:
    connection.execute(sa.update(staff).where(staff.c.id == row.id).values(**values))
    _audit(connection, AuditEvent.STAFF_CHANGED, now, actor, f"{row.username}: {what}",
           username=row.username)  # fmt: skip
    updated = connection.execute(sa.select(staff).where(staff.c.id == row.id)).one()
    return member_of(updated)


def _end_sessions(connection: Connection, row: sa.Row[Any], now: datetime) -> None:
    connection.execute(
        sa.update(staff_sessions)
        .where(staff_sessions.c.staff_id == row.id, staff_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )


def disable_staff(database: Database, username: str, *, actor: str, now: datetime) -> StaffMember:
    """No more sign-ins; the sessions open now end."""
    with database.write() as connection:
        row = _one(connection, username)
        if row.disabled_at is not None:
            raise InputRefused(f"{row.username} is already disabled")
        _end_sessions(connection, row, now)
        return _changed(connection, row, now, actor, "disabled", disabled_at=now, disabled_by=actor)


def reset_staff(database: Database, username: str, *, actor: str, now: datetime) -> NewSecret:
    """A new temporary password and a new TOTP secret; unlocked and enabled again."""
    password = secrets.token_urlsafe(12)
    secret = pyotp.random_base32()
    with database.write() as connection:
        row = _one(connection, username)
        _end_sessions(connection, row, now)
        member = _changed(
            connection,
            row,
            now,
            actor,
            "password and second factor reset",
            password_hash=_HASHER.hash(password),
            password_is_temporary=True,
            totp_secret=secret,
            totp_last_step=None,
            failed_sign_ins=0,
            locked_until=None,
            disabled_at=None,
            disabled_by=None,
        )
    return NewSecret(member, password, _uri(member.username, secret))


def set_role(
    database: Database, username: str, role: str, *, actor: str, now: datetime
) -> StaffMember:
    """Give an account another role (supervisors and admins then need the second factor)."""
    chosen = _role(role)
    with database.write() as connection:
        row = _one(connection, username)
        return _changed(
            connection,
            row,
            now,
            actor,
            f"role {row.role} -> {chosen}",
            role=chosen,
            totp_required=row.totp_required or chosen in _TOTP_ALWAYS,
        )


def authenticate(
    database: Database, username: str, password: str, code: str, *, now: datetime
) -> StaffMember:
    """The account, if the password (and the code, where required) are right and it is
    neither locked nor disabled; otherwise SignInRefused, with the reason audited."""
    with database.write() as connection:
        row = connection.execute(
            sa.select(staff).where(staff.c.username == username.strip().lower()).with_for_update()
        ).first()
        problem = _problem(row, password, code, now)
        if problem is None:
            assert row is not None
            connection.execute(
                sa.update(staff)
                .where(staff.c.id == row.id)
                .values(failed_sign_ins=0, locked_until=None, totp_last_step=_step(code, now))
            )
            _audit(connection, AuditEvent.STAFF_SIGNED_IN, now, row.username, "signed in")
            return member_of(row)
        name = row.username if row is not None else username.strip().lower()[:64]
        _audit(connection, AuditEvent.STAFF_SIGN_IN_FAILED, now, name or "?", problem)
        if row is not None and problem in ("wrong password", "wrong or reused code"):
            failures = row.failed_sign_ins + 1
            values: dict[str, Any] = {"failed_sign_ins": failures}
            if failures >= LOCK_AFTER:
                values = {"failed_sign_ins": 0, "locked_until": now + LOCK_FOR}
                _audit(
                    connection,
                    AuditEvent.STAFF_LOCKED,
                    now,
                    row.username,
                    f"{LOCK_AFTER} failed sign-ins in a row: locked for "
                    f"{int(LOCK_FOR.total_seconds() // 60)} minutes",
                )
            connection.execute(sa.update(staff).where(staff.c.id == row.id).values(**values))
    raise SignInRefused


def _step(code: str, now: datetime) -> int | None:
    """The TOTP time step a code belongs to (within one step of now), or None."""
    if not code.strip():
        return None
    return int(now.timestamp()) // 30


def _problem(row: sa.Row[Any] | None, password: str, code: str, now: datetime) -> str | None:
    try:
        _HASHER.verify(row.password_hash if row is not None else _dummy_hash(), password)
        right_password = row is not None
    except (VerificationError, InvalidHashError):
        right_password = False
    if row is None:
        return "no such account"
    if row.disabled_at is not None:
        return "account disabled"
    if row.locked_until is not None and row.locked_until > now:
        return "account locked"
    if not right_password:
        return "wrong password"
    if row.totp_required or code.strip():
        totp = pyotp.TOTP(row.totp_secret)
        step = int(now.timestamp()) // 30
        good = totp.verify(code.strip(), for_time=now, valid_window=1)
        if not good or (row.totp_last_step is not None and step <= row.totp_last_step):
            return "wrong or reused code"
    return None


def change_password(
    database: Database, member: StaffMember, old: str, new: str, *, now: datetime
) -> None:
    """A new password of the person's own choosing (the temporary one is then spent)."""
    if len(new) < MINIMUM_PASSWORD:
        raise InputRefused(f"a password needs at least {MINIMUM_PASSWORD} characters")
    if new == old:
        raise InputRefused("the new password must differ from the old one")
    with database.write() as connection:
        row = _one(connection, member.username)
        try:
            _HASHER.verify(row.password_hash, old)
        except (VerificationError, InvalidHashError):
            raise InputRefused("the current password is not right") from None
        _changed(
            connection,
            row,
            now,
            row.username,
            "password changed",
            password_hash=_HASHER.hash(new),
            password_is_temporary=False,
        )
