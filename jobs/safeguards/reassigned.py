"""The reassigned-number check: has a number changed hands since a date?

A bank that texts one-time codes to a number a customer gave it long ago asks this before it
sends (the CAMARA Number Recycling API, and ``recycler reassigned``). For a number and a local
date S the answer is *not reassigned* only when the number has an owner now whose ownership began
on or before S and has not been interrupted since; *reassigned* in every other case: the
current ownership began after S (a sale, a transfer, a reinstatement, which starts a new
ownership), or the number has no owner now (in the resale pool). A date after today, or before
the number's records begin, cannot be answered. The records of a number begin with its first
ownership, or earlier when the subscriber file said since when its owner has held it
(``owner_since``).

It also lists, month by month, the numbers whose ownership ended (the operator's periodic report
of disconnected numbers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock, local_date
from jobs.database.engine import Database
from jobs.database.schema import numbers, ownerships
from jobs.errors import InputRefused, NumberNotFound
from jobs.settings import Settings
from jobs.vocabulary import Verdict

__all__ = ["Answer", "answer_on", "disconnections", "reassigned"]


@dataclass(frozen=True)
class Answer:
    """The verdict, and the dates behind it."""

    msisdn: str
    since: date
    verdict: Verdict
    owner_since: date | None  # when the current ownership began; None in the pool
    records_from: date | None  # the earliest day the records answer for

    @property
    def reassigned(self) -> bool | None:
        """True or False, as CAMARA's ``phoneNumberRecycled``; None when out of range."""
        if self.verdict is Verdict.BEFORE_RECORDS:
            return None
        return self.verdict is Verdict.REASSIGNED

    def to_json(self) -> dict[str, Any]:
        """The machine-readable answer."""
        return {
            "msisdn": self.msisdn,
            "since": self.since.isoformat(),
            "reassigned": self.verdict.value,
            "owner_since": self.owner_since.isoformat() if self.owner_since else None,
            "records_from": self.records_from.isoformat() if self.records_from else None,
        }


def reassigned(
    database: Database, settings: Settings, clock: Clock, msisdn: str, since: date
) -> Answer:
    """Answer for a number in E.164 and a local date. Raises InputRefused for a date after
    today, NumberNotFound for a number recycler does not know."""
    today = local_date(clock.now(), settings.zone)
    with database.read() as connection:
        return answer_on(connection, settings, today, msisdn, since)


_started = sa.func.coalesce(ownerships.c.owner_since, ownerships.c.started_on)
_asked = sa.bindparam("msisdn", type_=numbers.c.msisdn.type)
# Built once: the API asks this for every check, and building the statement anew each time
# was a tenth of a check's time.
_RECORDS = sa.select(
    numbers.c.owner_id,
    sa.select(sa.func.min(_started))
    .where(ownerships.c.msisdn == _asked)
    .scalar_subquery()
    .label("records_from"),
    sa.select(_started)
    .where(ownerships.c.msisdn == _asked, ownerships.c.ended_at.is_(None))
    .scalar_subquery()
    .label("current"),
).where(numbers.c.msisdn == _asked)


def answer_on(
    connection: Connection, settings: Settings, today: date, msisdn: str, since: date
) -> Answer:
    """The same answer, on a connection the caller holds (the API records the check in the
    transaction it reads in)."""
    if since > today:
        raise InputRefused(
            f"{since.isoformat()} is after today ({today.isoformat()} in {settings.timezone}): "
            "nobody can say yet who will hold the number then"
        )
    row = connection.execute(_RECORDS, {"msisdn": msisdn}).first()
    if row is None:
        raise NumberNotFound(f"recycler knows no number {msisdn}")
    records_from, current = row.records_from, row.current
    if records_from is None or since < records_from:
        verdict = Verdict.BEFORE_RECORDS
    elif current is not None and row.owner_id is not None and current <= since:
        verdict = Verdict.SAME_OWNER
    else:
        verdict = Verdict.REASSIGNED
    return Answer(msisdn, since, verdict, current, records_from)


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
