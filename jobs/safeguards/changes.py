"""What every safeguard operation does to one number inside its one transaction: lock it, read
its ownership and pool entry, record ownerships, holds and audit events, end its cycle.

The operations themselves (hold, release, sale, reinstatement from the pool, and the four-eyes
requests) are built from these steps, so that each step is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock, local_date
from jobs.database.schema import (
    audit_events,
    holds,
    numbers,
    ownerships,
    resale_pool,
)
from jobs.errors import InputRefused, NumberNotFound
from jobs.transitions import end_cycles
from jobs.vocabulary import (
    AuditEvent,
    ChangeAction,
    CycleEnd,
    OwnershipEnd,
    OwnershipStart,
    PoolLeave,
)

__all__ = [
    "Change",
    "NumberChange",
    "Operator",
    "TakenByAnother",
    "refuse_past_validity",
    "taken_from",
]


class TakenByAnother(InputRefused):
    """The number has an owner now, whom a sale or transfer gave it to: giving it back takes
    it from them, which only a request a second person approves may do."""


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
    action: ChangeAction
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


class NumberChange:
    """One safeguard operation on one number, inside one transaction. Its moment is the
    database's (on PostgreSQL), like every decision several machines share: a cool-off
    started on one machine ends at the same moment for an approver on another."""

    def __init__(self, connection: Connection, clock: Clock, zone: ZoneInfo) -> None:
        self.connection = connection
        self.now = clock.now_in(connection)
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

    def place_hold(self, number: sa.Row[Any], operator: Operator) -> None:
        """Put the number on hold: its cycle ends, nothing happens to it until released."""
        self.connection.execute(
            holds.insert().values(
                msisdn=number.msisdn,
                placed_at=self.now,
                placed_by=operator.actor,
                reason=operator.reason,
            )
        )
        self.new_cycle(number.msisdn, CycleEnd.HELD, on_hold=True)
        self.audit(number.msisdn, AuditEvent.HOLD_PLACED, operator, owner_id=number.owner_id)

    def give_back(
        self,
        msisdn: str,
        previous_ownership_id: int,
        operator: Operator,
        *,
        validity_end: date | None,
        reason: str,
        details: dict[str, Any],
        pool_entry_id: int | None = None,
        **ownership: Any,
    ) -> tuple[sa.Row[Any], date]:
        """Reinstate: start a new ownership of the owner of an earlier one, with a new cycle
        and the validity end given (or the one that owner had), audited. Out of the pool, the
        number's pool entry is closed before the owner changes, as the database requires;
        otherwise the caller has ended the current ownership. Returns the earlier ownership and
        the validity end given back."""
        previous = self.connection.execute(
            sa.select(ownerships).where(ownerships.c.id == previous_ownership_id)
        ).one()
        new_end: date = validity_end or previous.final_validity_end
        ownership_id = self.start_ownership(
            msisdn,
            previous.owner_id,
            previous.language,
            OwnershipStart.REINSTATEMENT,
            started_by=operator.actor,
            reason=reason,
            **ownership,
        )
        if pool_entry_id is not None:
            self.leave_pool(pool_entry_id, PoolLeave.REINSTATED, ownership_id)
        self.new_cycle(
            msisdn,
            CycleEnd.REINSTATED,
            owner_id=previous.owner_id,
            language=previous.language,
            validity_end=new_end,
            recycled_by_run_id=None,
        )
        self.audit(
            msisdn,
            AuditEvent.OWNERSHIP_REINSTATED,
            operator,
            owner_id=previous.owner_id,
            validity_end_after=new_end,
            details=details,
        )
        return previous, new_end

    def open_hold(self, msisdn: str) -> sa.Row[Any] | None:
        return self.connection.execute(
            sa.select(holds).where(holds.c.msisdn == msisdn, holds.c.released_at.is_(None))
        ).first()

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


def refuse_past_validity(validity_end: date | None, today: date) -> None:
    """A reinstatement gives the owner valid credit back: a validity end already past is no
    such thing."""
    if validity_end is not None and validity_end < today:
        raise InputRefused(
            f"--validity-end {validity_end.isoformat()} is already past: a reinstatement "
            "gives the owner valid credit back"
        )


def taken_from(session: NumberChange, number: sa.Row[Any]) -> tuple[sa.Row[Any], sa.Row[Any]]:
    """For an owned number that was sold or transferred to its owner: the ownership that sale
    or transfer ended (the owner a reinstatement gives it back to), and the current one."""
    if number.owner_id is None:
        raise InputRefused(f"{number.msisdn} is neither in the pool nor owned")
    current = session.open_ownership(number.msisdn)
    assert current is not None, "an owned number always has an open ownership"
    if current.start_cause not in (OwnershipStart.SALE, OwnershipStart.TRANSFER):
        raise InputRefused(
            f"nothing to reinstate: {number.msisdn} has been with {number.owner_id} since "
            f"{current.started_on.isoformat()} ({current.start_cause})"
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
