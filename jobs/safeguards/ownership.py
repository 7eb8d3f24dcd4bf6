"""The safeguards from the seed: hold and release, sale from the pool, and reinstatement out of
the pool. Taking a number from an owner who still has it (a transfer, a forced reinstatement) is
not here: it needs a second person (``requests``).

Each operation is one transaction that locks the number, checks every rule, and refuses with a
sentence (exit 2) before it changes anything. Each writes its ownership records first and changes
the owner last, as the database's own guards require, and leaves an audit event with the actor and
the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from jobs.clock import Clock
from jobs.database.engine import BaseLock, Database, retried
from jobs.database.schema import holds
from jobs.errors import InputRefused
from jobs.rules import Rules
from jobs.safeguards.changes import (
    Change,
    NumberChange,
    Operator,
    TakenByAnother,
    refuse_past_validity,
    taken_from,
)
from jobs.settings import Settings
from jobs.vocabulary import AuditEvent, ChangeAction, CycleEnd, Language, OwnershipStart, PoolLeave

__all__ = ["LANGUAGES", "Safeguards"]

LANGUAGES = tuple(Language)


@dataclass(frozen=True)
class Safeguards:
    """The safeguard operations, over one database, with the clock, the time zone and the
    rules they need. Numbers come in E.164, already read from the user's text by the command
    line (or the HTTP layer): nothing here parses what a person typed."""

    database: Database
    clock: Clock
    zone: ZoneInfo
    rules: Rules

    @classmethod
    def of(cls, database: Database, settings: Settings, clock: Clock) -> Safeguards:
        """The operations with what the settings say."""
        return cls(database, clock, settings.zone, settings.rules)

    @contextmanager
    def _operate(self) -> Iterator[NumberChange]:
        """A write transaction, holding the base lock, and the change on it."""
        with self.database.write(lock=BaseLock.EXCLUSIVE) as connection:
            yield NumberChange(connection, self.clock, self.zone)

    @retried
    def hold(self, msisdn: str, operator: Operator) -> Change:
        """Stop everything for a number: no warning, no recycle, no sale, no transfer."""
        with self._operate() as session:
            number = session.number(msisdn)
            if number.on_hold:
                placed = session.open_hold(number.msisdn)
                since = (
                    f" since {placed.placed_at:%Y-%m-%d %H:%M} UTC by {placed.placed_by}"
                    if placed
                    else ""
                )
                raise InputRefused(f"{number.msisdn} is already on hold{since}")
            session.place_hold(number, operator)
        return Change(
            number.msisdn, ChangeAction.HOLD, f"{number.msisdn} is on hold", number.owner_id
        )

    @retried
    def release(self, msisdn: str, operator: Operator) -> Change:
        """Lift a hold; the number's warnings start over with a new cycle."""
        with self._operate() as session:
            number = session.number(msisdn)
            if not number.on_hold:
                raise InputRefused(f"{number.msisdn} is not on hold")
            session.connection.execute(
                sa.update(holds)
                .where(holds.c.msisdn == number.msisdn, holds.c.released_at.is_(None))
                .values(
                    released_at=session.now,
                    released_by=operator.actor,
                    release_reason=operator.reason,
                )
            )
            session.new_cycle(number.msisdn, CycleEnd.RELEASED, on_hold=False)
            session.audit(
                number.msisdn, AuditEvent.HOLD_RELEASED, operator, owner_id=number.owner_id
            )
        return Change(
            number.msisdn,
            ChangeAction.RELEASE,
            f"{number.msisdn} is no longer on hold",
            number.owner_id,
        )

    @retried
    def sell(
        self,
        msisdn: str,
        operator: Operator,
        *,
        owner: str,
        language: str,
        validity_end: date,
    ) -> Change:
        """Sell an available number from the pool to a new owner."""
        owner = owner.strip()
        if not owner:
            raise InputRefused("the new owner may not be blank")
        if language not in LANGUAGES:
            raise InputRefused(f"unknown language {language!r} (expected km or en)")
        with self._operate() as session:
            number = session.number(msisdn)
            entry = session.pool_entry(number.msisdn)
            if entry is None:
                raise InputRefused(
                    f"{number.msisdn} is not in the resale pool (it belongs to {number.owner_id}); "
                    "only a transfer request with both consents, approved by a second person, "
                    "can give it to someone else"
                )
            if number.on_hold:
                raise InputRefused(f"{number.msisdn} is on hold: it cannot be sold until released")
            if entry.available_from > session.today:
                raise InputRefused(
                    f"{number.msisdn} is in quarantine until {entry.available_from.isoformat()}"
                )
            if validity_end < session.today:
                raise InputRefused(
                    f"--validity-end {validity_end.isoformat()} is already past: a sale starts the "
                    "new owner with valid credit"
                )
            ownership_id = session.start_ownership(
                number.msisdn,
                owner,
                language,
                OwnershipStart.SALE,
                started_by=operator.actor,
                reason=operator.reason,
            )
            session.leave_pool(entry.id, PoolLeave.SOLD, ownership_id)
            session.new_cycle(
                number.msisdn,
                CycleEnd.SOLD,
                owner_id=owner,
                language=language,
                validity_end=validity_end,
                recycled_by_run_id=None,
            )
            session.audit(
                number.msisdn,
                AuditEvent.OWNERSHIP_SOLD,
                operator,
                owner_id=owner,
                validity_end_after=validity_end,
            )
        return Change(number.msisdn, ChangeAction.SALE, f"{number.msisdn} sold to {owner}", owner)

    @retried
    def reinstate(
        self,
        msisdn: str,
        operator: Operator,
        *,
        validity_end: date | None = None,
    ) -> Change:
        """Give a recycled number back, out of the pool, to the owner the recycle took it from.
        A number someone holds now goes back only through a request a second person approves
        (``FourEyes.request_reinstatement``)."""
        with self._operate() as session:
            number = session.number(msisdn)
            entry = session.pool_entry(number.msisdn)
            if entry is None:
                _, current = taken_from(session, number)
                taken_by = "sold" if current.start_cause == OwnershipStart.SALE else "transferred"
                raise TakenByAnother(
                    f"{number.msisdn} was {taken_by} to {number.owner_id} on "
                    f"{current.started_on.isoformat()}; reinstating takes it from them: add "
                    "--force to open a request, which a second person must approve"
                )
            refuse_past_validity(validity_end, session.today)
            previous, new_end = session.give_back(
                number.msisdn,
                entry.previous_ownership_id,
                operator,
                validity_end=validity_end,
                reason=operator.reason,
                details={"from_owner": None, "forced": False},
                pool_entry_id=entry.id,
            )
        return Change(
            number.msisdn,
            ChangeAction.REINSTATEMENT,
            f"{number.msisdn} is back with {previous.owner_id} "
            f"(validity end {new_end.isoformat()})",
            previous.owner_id,
        )
