"""Staff accounts and console sessions, on both databases: the second factor, lockout, the
session's idle and absolute limits, and what a reset or a disable does to open sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa

from jobs.database.schema import audit_events, staff
from jobs.staff.accounts import (
    SignInRefused,
    add_staff,
    authenticate,
    disable_staff,
    reset_staff,
)
from jobs.staff.sessions import find_session, start_session
from jobs.vocabulary import AuditEvent
from tests.support.world import World

T0 = datetime(2026, 11, 26, 9, 0, 7, tzinfo=UTC)


def supervisor(world: World) -> tuple[str, pyotp.TOTP]:
    new = add_staff(world.database, "sok", "supervisor", totp=False, actor="admin", now=T0)
    return new.password, pyotp.TOTP(pyotp.parse_uri(new.totp_uri).secret)


def events(world: World) -> list[tuple[str, str]]:
    with world.database.read() as connection:
        rows = connection.execute(
            sa.select(audit_events.c.event_type, audit_events.c.reason).order_by(audit_events.c.id)
        )
        return [(row.event_type, row.reason) for row in rows]


class TestSignIn:
    def test_the_code_is_required_and_good_once(self, world: World) -> None:
        password, totp = supervisor(world)
        with pytest.raises(SignInRefused):
            authenticate(world.database, "sok", password, "", now=T0)
        code = totp.at(T0)
        assert authenticate(world.database, "SOK ", password, code, now=T0).username == "sok"
        with pytest.raises(SignInRefused):  # the same code again, seconds later
            authenticate(world.database, "sok", password, code, now=T0 + timedelta(seconds=5))
        later = T0 + timedelta(seconds=60)
        authenticate(world.database, "sok", password, totp.at(later), now=later)
        assert [kind for kind, _ in events(world)] == [
            AuditEvent.STAFF_ADDED,
            AuditEvent.STAFF_SIGN_IN_FAILED,
            AuditEvent.STAFF_SIGNED_IN,
            AuditEvent.STAFF_SIGN_IN_FAILED,
            AuditEvent.STAFF_SIGNED_IN,
        ]
        assert events(world)[1][1] == "wrong or reused code"

    def test_five_failures_lock_for_fifteen_minutes(self, world: World) -> None:
        password, totp = supervisor(world)
        for attempt in range(5):
            with pytest.raises(SignInRefused):
                authenticate(
                    world.database, "sok", "guess", "", now=T0 + timedelta(seconds=attempt)
                )
        at = T0 + timedelta(minutes=14, seconds=59)
        with pytest.raises(SignInRefused):
            authenticate(world.database, "sok", password, totp.at(at), now=at)
        assert events(world)[-1] == (AuditEvent.STAFF_SIGN_IN_FAILED, "account locked")
        assert (
            AuditEvent.STAFF_LOCKED,
            "5 failed sign-ins in a row: locked for 15 minutes",
        ) in events(world)
        after = T0 + timedelta(minutes=15, seconds=5)
        assert authenticate(world.database, "sok", password, totp.at(after), now=after)

    def test_unknown_and_disabled_get_the_same_answer(self, world: World) -> None:
        password, totp = supervisor(world)
        disable_staff(world.database, "sok", actor="admin", now=T0)
        for name, secret in (("nobody", "x"), ("sok", password)):
            with pytest.raises(SignInRefused, match="is not right, or the account is locked"):
                authenticate(world.database, name, secret, totp.at(T0), now=T0)
        assert [
            reason for kind, reason in events(world) if kind == AuditEvent.STAFF_SIGN_IN_FAILED
        ] == [
            "no such account",
            "account disabled",
        ]


class TestSessions:
    def test_idle_and_absolute_limits(self, world: World) -> None:
        password, totp = supervisor(world)
        member = authenticate(world.database, "sok", password, totp.at(T0), now=T0)
        session = start_session(world.database, member, now=T0)
        moment = T0
        # Kept alive by a request every 29 minutes, until 12 hours after the sign-in.
        while moment + timedelta(minutes=29) < T0 + timedelta(hours=12):
            moment += timedelta(minutes=29)
            assert find_session(world.database, session.token, now=moment) is not None
        assert find_session(world.database, session.token, now=T0 + timedelta(hours=12)) is None
        idle = start_session(world.database, member, now=T0)
        assert find_session(world.database, idle.token, now=T0 + timedelta(minutes=30)) is None
        assert find_session(world.database, "made-up", now=T0) is None

    def test_reset_and_disable_end_open_sessions(self, world: World) -> None:
        password, totp = supervisor(world)
        member = authenticate(world.database, "sok", password, totp.at(T0), now=T0)
        session = start_session(world.database, member, now=T0)
        reset_staff(world.database, "sok", actor="admin", now=T0 + timedelta(minutes=1))
        assert find_session(world.database, session.token, now=T0 + timedelta(minutes=2)) is None
        with world.database.read() as connection:
            stored = connection.execute(sa.select(staff.c.password_hash)).scalar_one()
        assert stored.startswith("$argon2id$")
        assert password not in stored
