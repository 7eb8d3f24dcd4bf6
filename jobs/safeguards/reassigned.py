"""The reassigned-number check: has a number changed owner since a date?

Like the US FCC's Reassigned Numbers Database and the CAMARA NumberRecycling API, it lets a bank
ask before it texts a one-time code to a number a customer gave it long ago. The answer is
``yes`` (the ownership changed on or after that date: recycled, sold, transferred or reinstated),
``no``, or ``unknown`` when recycler's records of the number begin after that date.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa

from jobs.clock import local_date
from jobs.database.engine import Database
from jobs.database.schema import ownerships
from jobs.phone import number_from_user
from jobs.settings import Settings

__all__ = ["Answer", "disconnections", "reassigned"]


@dataclass(frozen=True)
class Answer:
    """yes, no or unknown, and the dates behind it."""

    msisdn: str
    since: date
    answer: str
    changed_on: date | None = None
    records_from: date | None = None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable answer."""
        return {
            "msisdn": self.msisdn,
            "since": self.since.isoformat(),
            "reassigned": self.answer,
            "changed_on": self.changed_on.isoformat() if self.changed_on else None,
            "records_from": self.records_from.isoformat() if self.records_from else None,
        }


def reassigned(database: Database, settings: Settings, text: str, since: date) -> Answer:
    """Whether the number's ownership changed on or after `since` (a local date)."""
    msisdn = number_from_user(text, settings.default_region)
    start = datetime.combine(since, time(0), tzinfo=settings.zone)
    with database.read() as connection:
        first_record = connection.execute(
            sa.select(sa.func.min(ownerships.c.started_at)).where(ownerships.c.msisdn == msisdn)
        ).scalar()
        changed = connection.execute(
            sa.select(sa.func.min(ownerships.c.ended_at)).where(
                ownerships.c.msisdn == msisdn,
                ownerships.c.ended_at >= start,
                ownerships.c.end_cause.is_not(None),
            )
        ).scalar()
    records_from = local_date(first_record, settings.zone) if first_record else None
    if changed is not None:
        return Answer(msisdn, since, "yes", local_date(changed, settings.zone), records_from)
    if records_from is None or records_from > since:
        return Answer(msisdn, since, "unknown", None, records_from)
    return Answer(msisdn, since, "no", None, records_from)


def disconnections(
    database: Database, settings: Settings, year: int, month: int
) -> Iterator[dict[str, Any]]:
    """Every ownership that ended in a month (local dates): the number, the day, the cause."""
    first = date(year, month, 1)
    after = date(year + (month == 12), month % 12 + 1, 1)
    with database.read() as connection:
        rows = connection.execution_options(yield_per=5_000).execute(
            sa.select(ownerships.c.msisdn, ownerships.c.ended_at, ownerships.c.end_cause)
            .where(
                ownerships.c.ended_at >= datetime.combine(first, time(0), tzinfo=settings.zone),
                ownerships.c.ended_at < datetime.combine(after, time(0), tzinfo=settings.zone),
            )
            .order_by(ownerships.c.ended_at, ownerships.c.msisdn)
        )
        for row in rows:
            yield {
                "msisdn": row.msisdn,
                "disconnected_on": local_date(row.ended_at, settings.zone).isoformat(),
                "cause": row.end_cause,
            }
