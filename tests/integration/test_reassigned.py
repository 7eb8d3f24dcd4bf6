"""The reassigned check (issue 11): "false" only when the number has an owner now whose ownership
began on or before the date asked about, without interruption since; "true" otherwise.

Dates are the operator's local dates. A date after today, or before the number's records begin,
is out of range (the CLI's "unknown"), unless the subscriber file said since when the owner has
held the number (``owner_since``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from jobs.cli import cli
from jobs.cli.app import App
from jobs.database.schema import numbers
from jobs.errors import ExitCode, InputRefused, NumberNotFound
from jobs.importing.subscribers import import_subscribers
from jobs.safeguards.changes import Operator
from jobs.safeguards.ownership import Safeguards
from jobs.safeguards.reassigned import Verdict, reassigned
from jobs.sending.dispatcher import Dispatcher
from notifier.testing import InMemoryGateway
from tests.support.api import ApiServer, running_api
from tests.support.world import World, as_of_noon

D = date(2026, 11, 20)
CARE = Operator("care", "paid in time")


def ask(world: World, msisdn: str, since: date) -> Verdict:
    return reassigned(world.database, world.settings, world.clock, msisdn, since).verdict


def recycled_on_d(world: World, owner: str = "alice") -> str:
    """A number its first owner lost on D (recycled into the pool by the night of D)."""
    world.clock.moment = as_of_noon(D - timedelta(days=30), world.settings)
    msisdn = world.add_number(D - timedelta(days=93), owner_id=owner)
    world.add_warning(msisdn, 7, final_on=D - timedelta(days=10))
    world.fresh_feed(D)
    assert world.run(D, allow_mass_recycle=True).recycled == 1
    return msisdn


class TestTheRule:
    """Each case of the rule, with the clock on a given day."""

    def test_number_in_the_pool_has_no_owner(self, world: World) -> None:
        """The issue's defect: recycled on D, asked about D+1 on D+1, the answer was "no"."""
        msisdn = recycled_on_d(world)
        world.clock.moment = as_of_noon(D + timedelta(days=1), world.settings)
        assert ask(world, msisdn, D + timedelta(days=1)) is Verdict.REASSIGNED
        assert ask(world, msisdn, D) is Verdict.REASSIGNED
        assert ask(world, msisdn, D - timedelta(days=5)) is Verdict.REASSIGNED

    def test_same_owner_since_the_records_begin(self, world: World) -> None:
        """An owner since day S0: false from S0 to today, out of range before S0."""
        world.clock.moment = as_of_noon(D - timedelta(days=10), world.settings)
        msisdn = world.add_number(D + timedelta(days=40))
        world.clock.moment = as_of_noon(D, world.settings)
        start = D - timedelta(days=10)
        assert ask(world, msisdn, start) is Verdict.SAME_OWNER
        assert ask(world, msisdn, D) is Verdict.SAME_OWNER
        assert ask(world, msisdn, start - timedelta(days=1)) is Verdict.BEFORE_RECORDS

    def test_a_new_owner_after_the_date(self, world: World) -> None:
        """Sold on D+2 to bob: true for dates before D+2, false from D+2."""
        msisdn = recycled_on_d(world)
        world.clock.moment = as_of_noon(D + timedelta(days=2), world.settings)
        Safeguards.of(world.database, world.settings, world.clock).sell(
            msisdn,
            CARE,
            owner="bob",
            language="en",
            validity_end=D + timedelta(days=30),
        )
        assert ask(world, msisdn, D + timedelta(days=1)) is Verdict.REASSIGNED
        assert ask(world, msisdn, D + timedelta(days=2)) is Verdict.SAME_OWNER

    def test_a_reinstatement_starts_a_new_ownership(self, world: World) -> None:
        """Given back to alice on D+1: true for every date before D+1 (the cautious side)."""
        msisdn = recycled_on_d(world)
        world.clock.moment = as_of_noon(D + timedelta(days=1), world.settings)
        Safeguards.of(world.database, world.settings, world.clock).reinstate(msisdn, CARE)
        assert ask(world, msisdn, D - timedelta(days=20)) is Verdict.REASSIGNED
        assert ask(world, msisdn, D + timedelta(days=1)) is Verdict.SAME_OWNER

    def test_a_date_after_today_is_out_of_range(self, world: World) -> None:
        """Tomorrow is refused, whatever the number."""
        msisdn = world.add_number(D + timedelta(days=40))
        world.clock.moment = as_of_noon(D, world.settings)
        with pytest.raises(InputRefused, match="after today"):
            ask(world, msisdn, D + timedelta(days=1))

    def test_unknown_number(self, world: World) -> None:
        """A well-formed number recycler does not know."""
        with pytest.raises(NumberNotFound):
            ask(world, "+85517888777", D)


class TestOwnerSince:
    """The subscriber file may say since when the owner has held the number."""

    @staticmethod
    def imported(world: World, path: Path, text: str) -> tuple[int, int]:
        """Import a subscriber file with these lines on D; (applied, rejected)."""
        world.clock.moment = as_of_noon(D, world.settings)
        path.write_text(text)
        summary = import_subscribers(
            world.database, path, world.settings, world.clock, actor="feed"
        )
        return summary.applied, summary.rejected

    def test_owner_since_moves_the_records_back(self, world: World, tmp_path: Path) -> None:
        """Imported on D with owner_since 2019-05-01: false for 2020-01-01, out of range for
        2019-04-30."""
        assert self.imported(
            world,
            tmp_path / "subscribers.csv",
            "msisdn,owner_id,language,validity_end,owner_since\n"
            "+85512000001,alice,km,2026-12-20,2019-05-01\n"
            "+85512000002,bob,km,2026-12-20,\n",
        ) == (2, 0)
        assert ask(world, "+85512000001", date(2020, 1, 1)) is Verdict.SAME_OWNER
        assert ask(world, "+85512000001", date(2019, 5, 1)) is Verdict.SAME_OWNER
        assert ask(world, "+85512000001", date(2019, 4, 30)) is Verdict.BEFORE_RECORDS
        assert ask(world, "+85512000002", D) is Verdict.SAME_OWNER
        assert ask(world, "+85512000002", D - timedelta(days=1)) is Verdict.BEFORE_RECORDS

    def test_owner_since_given_by_a_later_file(self, world: World, tmp_path: Path) -> None:
        """A number first imported without owner_since gets it from a later file (the same
        owner): its records then begin there; a file that says another date after that is a
        reject."""
        path = tmp_path / "subscribers.csv"
        header = "msisdn,owner_id,language,validity_end,owner_since\n"
        assert self.imported(world, path, header + "+85512000001,alice,km,2026-12-20,\n") == (
            1,
            0,
        )
        assert ask(world, "+85512000001", date(2020, 1, 1)) is Verdict.BEFORE_RECORDS
        later = header + "+85512000001,alice,km,2026-12-20,2019-05-01\n"
        assert self.imported(world, path, later) == (1, 0)
        assert ask(world, "+85512000001", date(2020, 1, 1)) is Verdict.SAME_OWNER
        assert ask(world, "+85512000001", date(2019, 4, 30)) is Verdict.BEFORE_RECORDS
        contradicting = header + "+85512000001,alice,km,2026-12-20,2018-01-01\n"
        assert self.imported(world, path, contradicting) == (0, 1)
        assert ask(world, "+85512000001", date(2019, 4, 30)) is Verdict.BEFORE_RECORDS

    def test_owner_since_in_the_future_is_a_reject(self, world: World, tmp_path: Path) -> None:
        """An owner cannot have held the number since after today."""
        assert self.imported(
            world,
            tmp_path / "subscribers.csv",
            "msisdn,owner_id,language,validity_end,owner_since\n"
            "+85512000001,alice,km,2026-12-20,2027-01-01\n",
        ) == (0, 1)


# The rule over random histories: the command line, the API and a model of the history agree ----

START = date(2026, 3, 2)
NUMBERS = 3

history_steps = st.lists(
    st.one_of(
        # Nights come often, so that warnings go out and histories reach recycling.
        st.tuples(st.just("night"), st.integers(1, 20)),
        st.tuples(st.just("night"), st.integers(1, 20)),
        st.tuples(st.just("night"), st.integers(1, 20)),
        st.tuples(st.just("sell"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("transfer"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("reinstate"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("topup"), st.integers(0, NUMBERS - 1)),
    ),
    min_size=3,
    max_size=16,
)


@dataclass
class Held:
    """What the test itself knows of a number: when its records begin, and since when its
    current owner has held it (None while it has no owner)."""

    records_from: date
    current_since: date | None
    changes: list[date]

    def expected(self, since: date, today: date) -> str:
        """The issue's rule, written from the history the test made."""
        if since > today:
            return "refused"
        if since < self.records_from:
            return "unknown"
        if self.current_since is not None and self.current_since <= since:
            return "no"
        return "yes"


class _Story:
    """A base imported from a subscriber file (owner_since given for some numbers, not for
    others), then nights, sends, sales, transfers, reinstatements and top-ups."""

    def __init__(self, world: World, folder: Path, owner_since: list[int | None]) -> None:
        self.world = world
        self.day = START
        world.clock.moment = as_of_noon(START, world.settings)
        self.msisdns = [f"+8551200{index:04d}" for index in range(NUMBERS)]
        lines = ["msisdn,owner_id,language,validity_end,owner_since"]
        self.held: dict[str, Held] = {}
        for index, msisdn in enumerate(self.msisdns):
            since = START - timedelta(days=owner_since[index]) if owner_since[index] else None
            # Validity already ended, at different depths: most numbers reach recycling.
            validity_end = START - timedelta(days=75 + 5 * index)
            lines.append(f"{msisdn},owner-{index},en,{validity_end},{since or ''}")
            self.held[msisdn] = Held(since or START, since or START, [])
        path = folder / "subscribers.csv"
        path.write_text("\n".join(lines) + "\n")
        summary = import_subscribers(
            world.database, path, world.settings, world.clock, actor="feed"
        )
        assert (summary.applied, summary.rejected) == (NUMBERS, 0)
        self.buyers = 0

    def today(self) -> date:
        return self.world.clock.now().astimezone(self.world.settings.zone).date()

    def owners(self) -> dict[str, str | None]:
        with self.world.database.read() as connection:
            rows = connection.execute(sa.select(numbers.c.msisdn, numbers.c.owner_id)).all()
        return {msisdn: owner for msisdn, owner in rows}

    def act(self, action: str, value: int) -> None:
        world = self.world
        database, chosen, clock = world.database, world.settings, world.clock
        clock.advance(timedelta(minutes=20))
        msisdn = self.msisdns[value] if action != "night" else ""
        before = self.owners()
        try:
            if action == "night":
                self.day += timedelta(days=value)
                world.fresh_feed(self.day)
                world.run(self.day, allow_mass_recycle=True)
                Dispatcher(database, chosen, InMemoryGateway(), clock).drain()
            elif action == "sell":
                self.buyers += 1
                Safeguards.of(database, chosen, clock).sell(
                    msisdn,
                    CARE,
                    owner=f"buyer-{self.buyers}",
                    language="en",
                    validity_end=self.today() + timedelta(days=20),
                )
            elif action == "transfer":
                self.buyers += 1
                world.transfer(msisdn, f"buyer-{self.buyers}")
            elif action == "reinstate":
                Safeguards.of(database, chosen, clock).reinstate(msisdn, CARE)
            else:
                world.import_topup(msisdn, clock.now(), self.today() + timedelta(days=30))
        except InputRefused:
            event(f"{action} refused")
        after = self.owners()
        for number, owner in after.items():
            # Every change of hands shows as a change of owner: a recycle (to none), a sale
            # or a reinstatement (from none), a transfer (to another).
            if owner != before[number]:
                held = self.held[number]
                held.current_since = self.today() if owner is not None else None
                held.changes.append(self.today())
                event(f"{'recycled' if owner is None else 'new owner'}")

    def dates(self, msisdn: str) -> list[date]:
        """Dates before, on and after each change, the records' start, today and tomorrow."""
        held, today = self.held[msisdn], self.today()
        around = [held.records_from, today, *held.changes]
        return sorted({day + timedelta(days=shift) for day in around for shift in (-1, 0, 1)})


@pytest.fixture
def api(world: World, tmp_path: Path) -> Iterator[ApiServer]:
    """The API on the world's database and the world's clock."""
    with running_api(world, tmp_path, api_rate_per_client=0, clock=world.clock) as server:
        yield server


@settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    owner_since=st.lists(
        st.one_of(st.none(), st.integers(1, 3000)), min_size=NUMBERS, max_size=NUMBERS
    ),
    steps=history_steps,
)
def test_cli_api_and_history_agree(
    world: World,
    api: ApiServer,
    tmp_path: Path,
    owner_since: list[int | None],
    steps: list[tuple[str, int]],
) -> None:
    """After any history, every date around every change gets the model's answer from the
    library, the command line (`reassigned --json`) and the API (phoneNumberRecycled)."""
    world.reset()
    story = _Story(world, tmp_path, owner_since)
    for action, value in steps:
        story.act(action, value)
    token = api.token(*api.client())
    runner = CliRunner()
    env = {"RECYCLER_DATABASE_URL": world.url, "RECYCLER_LOG_FORMAT": "json"}
    today = story.today()
    for msisdn in story.msisdns:
        for since in story.dates(msisdn):
            expected = story.held[msisdn].expected(since, today)
            event(f"answer {expected}")
            shown = runner.invoke(
                cli,
                ["reassigned", msisdn, "--since", since.isoformat(), "--json"],
                obj=App(config_path=None, clock=world.clock),
                env=env,
            )
            answered = api.check({"phoneNumber": msisdn, "specifiedDate": since.isoformat()}, token)
            where = (msisdn, since, today, story.held[msisdn], steps)
            if expected == "refused":
                assert shown.exit_code == ExitCode.INPUT_REFUSED, (where, shown.output)
                assert (answered.status_code, answered.json()["code"]) == (400, "OUT_OF_RANGE")
                continue
            assert shown.exit_code == 0, (where, shown.output)
            assert json.loads(shown.stdout)["reassigned"] == expected, where
            if expected == "unknown":
                assert (answered.status_code, answered.json()["code"]) == (400, "OUT_OF_RANGE")
            else:
                assert answered.status_code == 200, (where, answered.text)
                assert answered.json() == {"phoneNumberRecycled": expected == "yes"}, where
