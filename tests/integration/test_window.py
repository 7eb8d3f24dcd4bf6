"""A night examines inside the warning window only the numbers whose due stage changed since the
last night and the numbers changed since (``take_changes``); every other night's choice must be
exactly what examining the whole window would have chosen. Random histories are replayed on two
databases: one as the product runs, one that forgets before every night that any night ran (so
that each examines the whole window); after every step both must hold the same numbers, cycles,
warnings and pool."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.database.schema import runs
from jobs.nightly import RunReport
from tests.support.histories import History
from tests.support.properties import shrinking_timeout
from tests.support.world import World

NUMBERS = 6

days = st.integers(0, 9)
number = st.integers(0, 40)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("run"), days),
        st.tuples(st.just("run"), days),
        st.tuples(st.just("quiet run"), days),
        st.tuples(st.just("quiet run"), days),
        st.tuples(st.just("dry run"), days),
        st.tuples(st.just("send"), st.just(0)),
        st.tuples(st.just("topup"), number),
        st.tuples(st.just("lengthen"), number),
        st.tuples(st.just("language"), number),
        st.tuples(st.just("hold"), number),
        st.tuples(st.just("release"), number),
        st.tuples(st.just("sell"), number),
        st.tuples(st.just("reinstate"), number),
        st.tuples(st.just("stages"), number),
    ),
    min_size=6,
    max_size=20,
)


def forget_nights(world: World) -> None:
    """As if no night had recorded its window: the next one examines all of it."""
    with world.database.write() as connection:
        connection.execute(sa.update(runs).values(window_rules=None))


@shrinking_timeout
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    # Validity ends around the warning window of the first nights (90 days of grace, stages
    # at 30, 14, 7 and 1 days before its end), so that nights cross stages.
    offsets=st.lists(st.integers(-95, -50), min_size=NUMBERS, max_size=NUMBERS),
    history=steps,
    stages=st.sampled_from([(30, 14, 7, 1), (10, 3)]),
)
def test_nights_choose_as_if_they_examined_the_whole_window(
    another_database: Callable[[], str],
    offsets: list[int],
    history: list[tuple[str, int]],
    stages: tuple[int, ...],
) -> None:
    """Same numbers, cycles, warnings, events and pool, step by step."""
    worlds = [World.create(another_database()) for _ in range(2)]
    try:
        shortcut = History(worlds[0].with_settings(warning_days=list(stages)), offsets)
        reference = History(
            worlds[1].with_settings(warning_days=list(stages)), offsets, before_night=forget_nights
        )
        for action, value in history:
            shortcut.act(action, value)
            reference.act(action, value)
            assert shortcut.world.snapshot() == reference.world.snapshot(), (action, value)
    finally:
        for world in worlds:
            world.close()


D = date(2026, 11, 20)
NEXT_DAY = D + timedelta(days=1)


def night(world: World, day: date, **options: Any) -> RunReport:
    """The night for a day, with a fresh feed."""
    world.fresh_feed(day)
    return world.run(day, **options)


class TestNextNight:
    """What the next night examines, seen from outside: a number nobody told recycler about
    is met only when its due stage changes; one changed through recycler at once."""

    @pytest.fixture
    def validity_end(self, world: World) -> date:
        """Grace ends 20 days after D: stage 30 on D and the night after (it crosses into
        stage 14 six nights later)."""
        return D + timedelta(days=20) - timedelta(days=world.settings.grace_days)

    def test_examines_crossings_and_changes(self, world: World, validity_end: date) -> None:
        warned = world.add_number(validity_end)
        assert night(world, D).warnings_queued == {30: 1}
        assert world.run_records()[-1].window_rules == "grace 90; stages 1,7,14,30"

        unseen = world.add_number(validity_end, owner_id="by-hand", noted=False)
        told = world.add_number(validity_end)
        assert night(world, NEXT_DAY).warnings_queued == {30: 1}
        assert world.warnings_of(told) == [(1, 30, "pending")]
        assert world.warnings_of(unseen) == []  # not examined: its stage did not change
        assert world.warnings_of(warned) == [(1, 30, "pending")]

        # Six nights later its due stage is 14: examined, and warned like the others.
        assert night(world, D + timedelta(days=6)).warnings_queued == {14: 3}
        assert world.warnings_of(unseen) == [(1, 14, "pending")]

    def test_whole_window_after_other_rules(self, world: World, validity_end: date) -> None:
        """Under other stages the last night's warnings prove nothing: all of it again."""
        world.add_number(validity_end)
        night(world, D)
        unseen = world.add_number(validity_end, owner_id="by-hand", noted=False)
        other = world.with_settings(warning_days=[21, 7])
        assert night(other, NEXT_DAY).warnings_queued == {21: 2}
        assert other.warnings_of(unseen) == [(1, 21, "pending")]
        assert other.run_records()[-1].window_rules == "grace 90; stages 7,21"

    def test_dry_run_takes_nothing(self, world: World, validity_end: date) -> None:
        """A dry run examines the changes and leaves them for the real night."""
        night(world, D)
        told = world.add_number(validity_end)
        assert night(world, NEXT_DAY, dry_run=True).warnings_queued == {30: 1}
        assert world.run_records()[-1].window_rules is None
        assert night(world, NEXT_DAY).warnings_queued == {30: 1}
        assert world.warnings_of(told) == [(1, 30, "pending")]
