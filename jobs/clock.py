"""Time, read in one place so that tests can set it and every rule sees the same day."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

__all__ = ["Clock", "FixedClock", "SystemClock", "end_of_day", "local_date"]


class Clock(Protocol):
    """Where the program learns what time it is."""

    def now(self) -> datetime:
        """The current moment, time-zone aware, in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that stands still until moved; for tests and simulations."""

    moment: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
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
