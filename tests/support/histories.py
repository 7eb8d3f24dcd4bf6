"""Random histories of a small base, acted out through the product's own services: nights
(some missed, some dry), sends, top-ups, subscriber files, holds, sales, transfers and
reinstatements. The property tests replay them and check what must hold whatever happened."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import sqlalchemy as sa
from hypothesis import event

from jobs.database.schema import numbers
from jobs.errors import InputRefused
from jobs.safeguards.changes import Operator
from jobs.safeguards.ownership import Safeguards
from jobs.sending.dispatcher import Dispatcher
from notifier.testing import InMemoryGateway
from tests.support.world import World, as_of_noon

__all__ = ["OPERATOR", "START", "History"]

START = date(2026, 3, 1)
OPERATOR = Operator(actor="property-test", reason="random history")


class History:
    """One base of numbers and the operations done to it, day by day.

    ``before_night`` is called on the world before each night (a test may change what the
    night knows)."""

    def __init__(
        self,
        world: World,
        validity_offsets: list[int],
        before_night: Callable[[World], None] | None = None,
    ) -> None:
        self.world = world.with_settings(send_window="00:00-24:00")
        self.day = START
        self.world.clock.moment = as_of_noon(START, world.settings)
        # The base arrives as an operator's does: a subscriber file, imported.
        self.msisdns = [self.world.next_msisdn() for _ in validity_offsets]
        self.world.import_subscribers(
            (msisdn, f"owner-{index}", "en", START + timedelta(days=offset))
            for index, (msisdn, offset) in enumerate(
                zip(self.msisdns, validity_offsets, strict=True)
            )
        )
        self.buyers = 0
        self.before_night = before_night or (lambda _world: None)

    def act(self, action: str, value: int) -> None:
        """Do one operation; ``value`` is a number's index, or a count of days for nights."""
        operations: dict[str, Callable[[int], object]] = {
            "run": self.run,
            "quiet run": self.night,  # a night whose warnings wait unsent
            "dry run": self.dry_run,
            "send": lambda _value: self.send(),
            "topup": self.topup,
            "lengthen": self.lengthen,
            "language": self.language,
            "hold": lambda index: self.safeguards().hold(self.msisdn(index), OPERATOR),
            "release": lambda index: self.safeguards().release(self.msisdn(index), OPERATOR),
            "sell": self.sell,
            "stages": self.stages,
            "transfer": self.transfer,
            "force": lambda index: self.world.reinstate_by_force(self.msisdn(index)),
            "reinstate": lambda index: self.safeguards().reinstate(self.msisdn(index), OPERATOR),
        }
        self.world.clock.advance(timedelta(minutes=20))
        try:
            operations[action](value)
            event(f"{action} done")
        except InputRefused:
            event(f"{action} refused")  # refused cleanly; the invariants must hold all the same

    def msisdn(self, index: int) -> str:
        return self.msisdns[index % len(self.msisdns)]

    def safeguards(self) -> Safeguards:
        return Safeguards.of(self.world.database, self.world.settings, self.world.clock)

    def run(self, days: int) -> None:
        """A night, then the day's sending, as the daemon would do them."""
        self.night(days)
        self.send()

    def send(self) -> None:
        world = self.world
        Dispatcher(world.database, world.settings, InMemoryGateway(), world.clock).drain()

    def dry_run(self, days: int) -> None:
        self.before_night(self.world)
        self.world.run(self.day + timedelta(days=days), dry_run=True)

    def topup(self, index: int) -> None:
        world = self.world
        world.import_topup(self.msisdn(index), world.clock.now(), self.day + timedelta(days=30))

    def lengthen(self, index: int) -> None:
        """The subscriber file moves the validity end a few days later, which may keep the
        number inside the warning window with a new cycle."""
        self.subscriber_row(self.msisdn(index), lambda row: (row.language, index % 9 + 1))

    def language(self, index: int) -> None:
        self.subscriber_row(
            self.msisdn(index), lambda row: ("km" if row.language == "en" else "en", 0)
        )

    def stages(self, choice: int) -> None:
        """The operator changes the warning stages (the settings, from the next command on)."""
        stages = ((30, 14, 7, 1), (10, 3), (21, 7))[choice % 3]
        self.world = self.world.with_settings(warning_days=list(stages))

    def sell(self, index: int) -> None:
        self.buyers += 1
        self.safeguards().sell(
            self.msisdn(index),
            OPERATOR,
            owner=f"buyer-{self.buyers}",
            language="en",
            validity_end=self.today() + timedelta(days=20),
        )

    def transfer(self, index: int) -> None:
        """Requested, the owner's notice sent, approved by a second person."""
        self.buyers += 1
        self.world.transfer(self.msisdn(index), f"buyer-{self.buyers}")

    def night(self, days: int) -> None:
        """The night `days` after the last one (0: the same date again)."""
        self.day += timedelta(days=days)
        self.world.fresh_feed(self.day)
        self.before_night(self.world)
        self.world.run(self.day, allow_mass_recycle=True)

    def subscriber_row(
        self, msisdn: str, change: Callable[[sa.Row[tuple[object, ...]]], tuple[str, int]]
    ) -> None:
        """Import a subscriber file of one row for an owned number: its owner, the language
        and the days to add to its validity end that ``change`` gives."""
        with self.world.database.read() as connection:
            row = connection.execute(sa.select(numbers).where(numbers.c.msisdn == msisdn)).one()
        if row.owner_id is None:
            event("subscriber row skipped: the number has no owner")
            return
        language, days = change(row)
        self.world.import_subscribers(
            [(msisdn, row.owner_id, language, row.validity_end + timedelta(days=days))]
        )

    def today(self) -> date:
        """The local date of the world's clock."""
        return self.world.clock.now().astimezone(self.world.settings.zone).date()
