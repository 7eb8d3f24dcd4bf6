"""The safeguards from the seed: hold and release, sale from the pool, consent-guarded transfer,
and reinstatement. These are the only ways a number changes owner, besides the nightly recycle.

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
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock, local_date
from jobs.database.engine import BaseLock, Database, retried
from jobs.database.schema import (
    audit_events,
    holds,
    numbers,
    ownerships,
    resale_pool,
)
from jobs.errors import InputRefused, NumberNotFound
from jobs.rules import Rules
from jobs.settings import Settings
from jobs.transitions import end_cycles
from jobs.vocabulary import AuditEvent, CycleEnd, Language, OwnershipEnd, OwnershipStart, PoolLeave

__all__ = ["Change", "Operator", "Safeguards"]

LANGUAGES = tuple(Language)


@dataclass(frozen=True)
class Operator:
    """Who acts, and why: every safeguard records both."""

    actor: str
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise InputRefused("a reason is required, and it may not be blank")
        if not self.actor.strip():
            raise InputRefused("an actor is required, and it may not be blank")


@dataclass(frozen=True)
class Change:
    """What an operation did, for people and for --json."""

    msisdn: str
    action: str
    summary: str
    owner_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result."""
        return {
            "msisdn": self.msisdn,
            "action": self.action,
            "owner_id": self.owner_id,
            "summary": self.summary,
        }


class _NumberChange:
    """One safeguard operation on one number, inside one transaction."""

    def __init__(self, connection: Connection, clock: Clock, zone: ZoneInfo) -> None:
        self.connection = connection
        self.now = clock.now()
        self.today = local_date(self.now, zone)

    def number(self, msisdn: str) -> sa.Row[Any]:
        row = self.connection.execute(
            sa.select(numbers).where(numbers.c.msisdn == msisdn).with_for_update()
        ).first()
        if row is None:
            raise NumberNotFound(f"recycler knows no number {msisdn}")
        return row

    def open_ownership(self, msisdn: str) -> sa.Row[Any] | None:
        return self.connection.execute(
            sa.select(ownerships).where(
                ownerships.c.msisdn == msisdn, ownerships.c.ended_at.is_(None)
            )
        ).first()

    def pool_entry(self, msisdn: str) -> sa.Row[Any] | None:
        return self.connection.execute(
            sa.select(resale_pool).where(
                resale_pool.c.msisdn == msisdn, resale_pool.c.left_at.is_(None)
            )
        ).first()

    def end_ownership(self, ownership_id: int, cause: str, actor: str, reason: str) -> None:
        self.connection.execute(
            sa.update(ownerships)
            .where(ownerships.c.id == ownership_id)
            .values(
                ended_at=self.now,
                ended_on=self.today,
                end_cause=cause,
                ended_by=actor,
                reason=reason,
                final_validity_end=sa.select(numbers.c.validity_end)
                .where(numbers.c.msisdn == ownerships.c.msisdn)
                .scalar_subquery(),
            )
        )

    def start_ownership(
        self, msisdn: str, owner: str, language: str, cause: str, **extra: Any
    ) -> int:
        return int(
            self.connection.execute(
                ownerships.insert()
                .values(
                    msisdn=msisdn,
                    owner_id=owner,
                    language=language,
                    started_at=self.now,
                    started_on=self.today,
                    start_cause=cause,
                    **extra,
                )
                .returning(ownerships.c.id)
            ).scalar_one()
        )

    def leave_pool(self, entry_id: int, cause: str, ownership_id: int) -> None:
        """Close the number's pool entry: sold, or reinstated, to this ownership."""
        self.connection.execute(
            sa.update(resale_pool)
            .where(resale_pool.c.id == entry_id)
            .values(
                left_at=self.now,
                left_on=self.today,
                left_cause=cause,
                new_ownership_id=ownership_id,
            )
        )

    def new_cycle(self, msisdn: str, reason: CycleEnd, **values: Any) -> None:
        """End the number's current cycle: its unsent warnings will never go out."""
        end_cycles(
            self.connection, numbers.c.msisdn == msisdn, reason=reason, now=self.now, changes=values
        )

    def audit(self, msisdn: str, event_type: AuditEvent, operator: Operator, **fields: Any) -> None:
        self.connection.execute(
            audit_events.insert().values(
                occurred_at=self.now,
                event_type=event_type,
                msisdn=msisdn,
                actor=operator.actor,
                reason=operator.reason,
                **fields,
            )
        )


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
    def _operate(self) -> Iterator[_NumberChange]:
        """A write transaction, holding the base lock, and the change on it."""
        with self.database.write(lock=BaseLock.EXCLUSIVE) as connection:
            yield _NumberChange(connection, self.clock, self.zone)

    @retried
    def hold(self, msisdn: str, operator: Operator) -> Change:
        """Stop everything for a number: no warning, no recycle, no sale, no transfer."""
        with self._operate() as session:
            number = session.number(msisdn)
            if number.on_hold:
                placed = session.connection.execute(
                    sa.select(holds).where(
                        holds.c.msisdn == number.msisdn, holds.c.released_at.is_(None)
                    )
                ).first()
                since = (
                    f" since {placed.placed_at:%Y-%m-%d %H:%M} UTC by {placed.placed_by}"
                    if placed
                    else ""
                )
                raise InputRefused(f"{number.msisdn} is already on hold{since}")
            session.connection.execute(
                holds.insert().values(
                    msisdn=number.msisdn,
                    placed_at=session.now,
                    placed_by=operator.actor,
                    reason=operator.reason,
                )
            )
            session.new_cycle(number.msisdn, CycleEnd.HELD, on_hold=True)
            session.audit(number.msisdn, AuditEvent.HOLD_PLACED, operator, owner_id=number.owner_id)
        return Change(number.msisdn, "hold", f"{number.msisdn} is on hold", number.owner_id)

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
            number.msisdn, "release", f"{number.msisdn} is no longer on hold", number.owner_id
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
                    "only a transfer with both consents can give it to someone else"
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
        return Change(number.msisdn, "sale", f"{number.msisdn} sold to {owner}", owner)

    @retried
    def transfer(
        self,
        msisdn: str,
        operator: Operator,
        *,
        to_owner: str,
        consent_current: str,
        consent_new: str,
        language: str | None = None,
    ) -> Change:
        """Give an owned number to a new owner, with both owners' consent on record."""
        to_owner = to_owner.strip()
        if not to_owner:
            raise InputRefused("the new owner may not be blank")
        if not consent_current.strip() or not consent_new.strip():
            raise InputRefused(
                "a transfer needs the consent of both owners: give --consent-current and "
                "--consent-new, neither blank"
            )
        if language is not None and language not in LANGUAGES:
            raise InputRefused(f"unknown language {language!r} (expected km or en)")
        with self._operate() as session:
            number = session.number(msisdn)
            if number.owner_id is None:
                raise InputRefused(
                    f"{number.msisdn} is in the resale pool: sell it with `recycler pool sell`"
                )
            if number.on_hold:
                raise InputRefused(
                    f"{number.msisdn} is on hold: it cannot be transferred until released"
                )
            if number.owner_id == to_owner:
                raise InputRefused(f"{number.msisdn} already belongs to {to_owner}")
            grace_end = self.rules.grace_end(number.validity_end)
            if grace_end < session.today:
                raise InputRefused(
                    f"{number.msisdn} is past its grace end ({grace_end.isoformat()}): it is due "
                    "for recycling, and only an active or in-grace number can be transferred"
                )
            current = session.open_ownership(number.msisdn)
            assert current is not None, "an owned number always has an open ownership"
            session.end_ownership(
                current.id, OwnershipEnd.TRANSFER, operator.actor, operator.reason
            )
            session.start_ownership(
                number.msisdn,
                to_owner,
                language or number.language,
                OwnershipStart.TRANSFER,
                started_by=operator.actor,
                reason=operator.reason,
                consent_current=consent_current.strip(),
                consent_new=consent_new.strip(),
            )
            session.new_cycle(
                number.msisdn,
                CycleEnd.TRANSFERRED,
                owner_id=to_owner,
                language=language or number.language,
            )
            session.audit(
                number.msisdn,
                AuditEvent.OWNERSHIP_TRANSFERRED,
                operator,
                owner_id=to_owner,
                details={
                    "from_owner": number.owner_id,
                    "consent_current": consent_current.strip(),
                    "consent_new": consent_new.strip(),
                },
            )
        return Change(
            number.msisdn, "transfer", f"{number.msisdn} transferred to {to_owner}", to_owner
        )

    @retried
    def reinstate(
        self,
        msisdn: str,
        operator: Operator,
        *,
        validity_end: date | None = None,
        force: bool = False,
    ) -> Change:
        """Give a number back to the owner it was taken from: out of the pool, or, with force, from
        the owner it was sold or transferred to."""
        with self._operate() as session:
            number = session.number(msisdn)
            entry = session.pool_entry(number.msisdn)
            if entry is not None:
                previous = session.connection.execute(
                    sa.select(ownerships).where(ownerships.c.id == entry.previous_ownership_id)
                ).one()
            else:
                previous, current = _taken_from(session, number, force)
                session.end_ownership(
                    current.id, OwnershipEnd.REINSTATEMENT, operator.actor, operator.reason
                )
            new_end = validity_end or previous.final_validity_end
            if validity_end is not None and validity_end < session.today:
                raise InputRefused(
                    f"--validity-end {validity_end.isoformat()} is already past: a reinstatement "
                    "gives the owner valid credit back"
                )
            ownership_id = session.start_ownership(
                number.msisdn,
                previous.owner_id,
                previous.language,
                OwnershipStart.REINSTATEMENT,
                started_by=operator.actor,
                reason=operator.reason,
            )
            if entry is not None:
                session.leave_pool(entry.id, PoolLeave.REINSTATED, ownership_id)
            session.new_cycle(
                number.msisdn,
                CycleEnd.REINSTATED,
                owner_id=previous.owner_id,
                language=previous.language,
                validity_end=new_end,
                recycled_by_run_id=None,
            )
            session.audit(
                number.msisdn,
                AuditEvent.OWNERSHIP_REINSTATED,
                operator,
                owner_id=previous.owner_id,
                validity_end_after=new_end,
                details={"from_owner": number.owner_id, "forced": number.owner_id is not None},
            )
        return Change(
            number.msisdn,
            "reinstatement",
            f"{number.msisdn} is back with {previous.owner_id} "
            f"(validity end {new_end.isoformat()})",
            previous.owner_id,
        )


def _taken_from(
    session: _NumberChange, number: sa.Row[Any], force: bool
) -> tuple[sa.Row[Any], sa.Row[Any]]:
    """For an owned number: the ownership its current owner's sale or transfer ended, and the
    current one."""
    if number.owner_id is None:
        raise InputRefused(f"{number.msisdn} is neither in the pool nor owned")
    current = session.open_ownership(number.msisdn)
    assert current is not None
    if current.start_cause not in (OwnershipStart.SALE, OwnershipStart.TRANSFER):
        raise InputRefused(
            f"nothing to reinstate: {number.msisdn} has been with {number.owner_id} since "
            f"{current.started_on.isoformat()} ({current.start_cause})"
        )
    taken_by = "sold" if current.start_cause == OwnershipStart.SALE else "transferred"
    if not force:
        raise InputRefused(
            f"{number.msisdn} was {taken_by} to {number.owner_id} on "
            f"{current.started_on.isoformat()}; reinstating takes it from them: add --force"
        )
    # Before a sale, the owner the preceding recycle took the number from; before a transfer,
    # the owner who gave it.
    ended_by = (
        OwnershipEnd.RECYCLE
        if current.start_cause == OwnershipStart.SALE
        else OwnershipEnd.TRANSFER
    )
    before = session.connection.execute(
        sa.select(ownerships)
        .where(
            ownerships.c.msisdn == number.msisdn,
            ownerships.c.end_cause == ended_by,
            ownerships.c.id < current.id,
        )
        .order_by(ownerships.c.id.desc())
        .limit(1)
    ).first()
    if before is None:
        raise InputRefused(f"recycler has no record of who had {number.msisdn} before")
    return before, current
