"""The pure lifecycle rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.rules import (
    Action,
    Decision,
    NumberFacts,
    Phase,
    Rules,
    WarningFacts,
    decide,
    due_stage,
    feed_is_stale,
    grace_end,
    mass_recycle_tripped,
    phase,
)

RULES = Rules()
D = date(2026, 11, 20)


class TestDates:
    """Grace end and phases."""

    def test_grace_end_is_ninety_days_after_validity(self) -> None:
        """E = V + 90."""
        assert grace_end(date(2026, 8, 22), RULES) == D

    @pytest.mark.parametrize(
        ("validity_end", "expected"),
        [
            (date(2026, 11, 20), Phase.ACTIVE),  # D = V: still active
            (date(2026, 11, 19), Phase.IN_GRACE),
            (date(2026, 8, 22), Phase.IN_GRACE),  # D = E: last day in grace
            (date(2026, 8, 21), Phase.PAST_GRACE),
        ],
    )
    def test_phase_boundaries(self, validity_end: date, expected: Phase) -> None:
        """Active while D <= V, in grace while D <= E, past grace after."""
        assert phase(validity_end, D, RULES) is expected


class TestDueStage:
    """The smallest stage at least as large as the days left."""

    @pytest.mark.parametrize(
        ("days_left", "stage"),
        [
            (31, None),
            (30, 30),
            (29, 30),
            (15, 30),
            (14, 14),
            (8, 14),
            (7, 7),
            (2, 7),
            (1, 1),
            (0, 1),
            (-1, None),
        ],
    )
    def test_default_stages(self, days_left: int, stage: int | None) -> None:
        """30, 14, 7, 1."""
        assert due_stage(days_left, RULES.warning_days) == stage


class TestStageChangedSince:
    """The validity ends a night must look at again because their due stage moved."""

    def test_one_night_later(self) -> None:
        """Grace ends 30, 14, 7 and 1 days after D: the days that entered the window or crossed
        into a more urgent stage since D - 1 (a number 0 days from grace end was at 1 already)."""
        changed = RULES.stage_changed_since(D - timedelta(days=1), D)
        assert changed == [D - timedelta(days=90 - left) for left in (1, 7, 14, 30)]

    def test_same_date(self) -> None:
        """Run again for the same date: no stage moved."""
        assert RULES.stage_changed_since(D, D) == []

    def test_missed_nights(self) -> None:
        """Three nights later: each stage's boundary moved three days."""
        changed = RULES.stage_changed_since(D - timedelta(days=3), D)
        assert changed is not None
        lefts = sorted(90 - (D - end).days for end in changed)
        assert lefts == [0, 1, 5, 6, 7, 12, 13, 14, 28, 29, 30]

    def test_whole_window(self) -> None:
        """A gap as long as the window, or a date after D: every day of it (None)."""
        assert RULES.stage_changed_since(D - timedelta(days=31), D) is None
        assert RULES.stage_changed_since(D + timedelta(days=1), D) is None

    def test_signature_names_grace_and_stages(self) -> None:
        """Two settings with the same stages in another order are the same window."""
        assert Rules(warning_days=(1, 30, 7, 14)).window_signature == RULES.window_signature
        assert Rules(grace_days=60).window_signature != RULES.window_signature


class TestGuards:
    """Stale feed and mass recycle."""

    ZONE = ZoneInfo("Asia/Phnom_Penh")

    def test_no_feed_is_stale(self) -> None:
        """Nothing ever imported."""
        assert feed_is_stale(None, D, self.ZONE, 36)

    @pytest.mark.parametrize(
        ("newest", "stale"),
        [("2026-11-19T11:59:59+07:00", True), ("2026-11-19T12:00:00+07:00", False)],
    )
    def test_age_at_end_of_day(self, newest: str, stale: bool) -> None:
        """36 hours before the local midnight that ends D."""
        assert feed_is_stale(datetime.fromisoformat(newest), D, self.ZONE, 36) is stale

    @pytest.mark.parametrize(
        ("would", "base", "tripped"), [(2, 100, False), (3, 100, True), (1, 0, True), (0, 0, False)]
    )
    def test_mass_recycle(self, would: int, base: int, tripped: bool) -> None:
        """More than the fraction trips; exactly the fraction does not."""
        assert mass_recycle_tripped(would, base, 0.02) is tripped


class TestDecide:
    """One number, one night."""

    def test_held_numbers_get_nothing(self) -> None:
        """Even past grace with notice."""
        facts = NumberFacts(
            date(2026, 8, 1), on_hold=True, warnings=(WarningFacts(7, "sent", date(2026, 11, 1)),)
        )
        assert decide(facts, D, RULES) == Decision(Action.HOLD)

    def test_missed_stage_is_never_sent_late(self) -> None:
        """At E-7 with only stage 30 sent, the due stage is 7, not 14."""
        facts = NumberFacts(
            date(2026, 8, 29), warnings=(WarningFacts(30, "sent", date(2026, 10, 28)),)
        )
        assert decide(facts, D, RULES) == Decision(Action.WARN, 7)

    def test_pending_notice_does_not_count(self) -> None:
        """Past grace with a warning still waiting: deferred, nothing more queued."""
        facts = NumberFacts(date(2026, 8, 1), warnings=(WarningFacts(7, "pending"),))
        assert decide(facts, D, RULES) == Decision(Action.DEFER)

    def test_cancelled_notice_does_not_count(self) -> None:
        """A cancelled warning reached nobody."""
        facts = NumberFacts(date(2026, 8, 1), warnings=(WarningFacts(7, "cancelled"),))
        assert decide(facts, D, RULES) == Decision(Action.DEFER)
