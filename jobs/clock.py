"""Time, read in one place so that tests can set it and every rule sees the same day."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = [
    "EARLIEST_DATE",
    "LATEST_DATE",
    "Clock",
    "FixedClock",
    "SystemClock",
    "end_of_day",
    "local_date",
    "out_of_range",
    "parse_date",
    "parse_moment",
]

# The dates recycler accepts anywhere (a run's date, a validity end, a top-up): wide enough for
# any real base, narrow enough that every date computed from one stays a date.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2199, 12, 31)


class Clock(Protocol):
    """Where the program learns what time it is."""

    def now(self) -> datetime:
        """The current moment, time-zone aware, in UTC."""
        ...

    def now_in(self, connection: Connection) -> datetime:
        """The current moment as the database sees it, for decisions several machines share
        (who may take a claim, when a lease ends): one clock for all of them."""
        ...


class SystemClock:
    """The real clock: this machine's, and the database server's for shared decisions."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def now_in(self, connection: Connection) -> datetime:
        if connection.dialect.name != "postgresql":
            return self.now()  # SQLite lives on this machine: its clock is ours
        moment = connection.execute(sa.select(sa.func.statement_timestamp())).scalar_one()
        assert isinstance(moment, datetime)
        return moment.astimezone(UTC)


@dataclass
class FixedClock:
    """A clock that stands still until moved; for tests and simulations."""

    moment: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.moment

    def now_in(self, connection: Connection) -> datetime:
        """The same standing moment: tests decide time, wherever it is read."""
        return self.moment

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.moment += delta


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The operator's calendar date at a moment."""
    return moment.astimezone(zone).date()


def end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The first moment after a local date ends (local midnight that follows it), in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def parse_date(text: str) -> date:
    """An ISO 8601 calendar date, ``2026-11-25``; the error says whether the form is wrong or
    the day does not exist."""
    candidate = text.strip()
    if not candidate:
        raise ValueError("empty")
    if len(candidate) != 10 or candidate[4] != "-" or candidate[7] != "-":
        raise ValueError(f"{candidate!r} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(candidate)
    except ValueError as error:
        if candidate.replace("-", "").isdigit():
            raise ValueError(f"{candidate} is not a date: {error}") from None
        raise ValueError(f"{candidate!r} is not a date (YYYY-MM-DD)") from None


def out_of_range(day: date, what: str) -> str | None:
    """Why a date is outside what recycler accepts, or None."""
    if day < EARLIEST_DATE:
        return f"{what} {day.isoformat()} is before {EARLIEST_DATE.isoformat()}"
    if day > LATEST_DATE:
        return f"{what} {day.isoformat()} is after {LATEST_DATE.isoformat()}"
    return None


def parse_moment(text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 date and time; without an offset it is the operator's local time."""
    candidate = text.strip()
    if not candidate:
        raise ValueError("empty")
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(f"{candidate!r} is not an ISO 8601 date and time") from None
    problem = out_of_range(moment.date(), "the moment")
    if problem is not None:
        raise ValueError(problem)
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
