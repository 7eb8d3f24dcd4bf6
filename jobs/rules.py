"""The lifecycle rules (docs/rules.md) as small pure functions.

The nightly run applies the same rules in set-based SQL (``jobs.nightly``); the property tests hold
the two against each other. Dates are the operator's local dates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from jobs.clock import end_of_day
from jobs.vocabulary import NOTICE_STATES, Guard

__all__ = [
    "FINAL_NOTICE_STAGE",
    "Action",
    "Decision",
    "Guard",
    "NumberFacts",
    "Phase",
    "Rules",
    "WarningFacts",
    "days_left",
    "decide",
    "due_stage",
    "feed_is_stale",
    "grace_end",
    "mass_recycle_tripped",
    "phase",
]

# The stage of the final notice that the minimum-notice rule queues after grace end.
FINAL_NOTICE_STAGE = 0


@dataclass(frozen=True)
class Rules:
    """The settings the lifecycle rules depend on."""

    grace_days: int = 90
    warning_days: tuple[int, ...] = (30, 14, 7, 1)
    min_notice_days: int = 7
    quarantine_days: int = 0

    @property
    def earliest_stage(self) -> int:
        """The stage furthest from grace end."""
        return max(self.warning_days)

    @property
    def window_signature(self) -> str:
        """What the warning window's due stages depend on, as a run records it: two runs with
        the same signature give every validity end the same due stage on the same date."""
        stages = ",".join(str(stage) for stage in sorted(self.warning_days))
        return f"grace {self.grace_days}; stages {stages}"

    def due_stages(self, as_of: date) -> dict[date, int]:
        """The warning window of date D: each validity end inside it, with its due stage on D
        (the run's texts are framed per entry, and a night compares two of these)."""
        window = self.grace_cutoff(as_of)
        stages = {}
        for offset in range(self.earliest_stage + 1):
            stage = due_stage(offset, self.warning_days)
            if stage is not None:
                stages[window + timedelta(days=offset)] = stage
        return stages

    def stage_changed_since(self, since: date, as_of: date) -> list[date] | None:
        """The validity ends inside D's warning window whose due stage on D is not the one
        they had on an earlier date (a number there entered the window or crossed into a more
        urgent stage since): a handful of days a night. None when it is the whole window (the
        earlier date is too far back, or after D)."""
        if since > as_of:
            return None
        now, then = self.due_stages(as_of), self.due_stages(since)
        changed = [end for end, stage in now.items() if then.get(end) != stage]
        return None if len(changed) == len(now) else changed

    # The date arithmetic of the lifecycle, written once (docs/rules.md, "Terms and dates"):
    # the run's scope, its texts, inspection, the seed and the safeguards all use these.

    def grace_end(self, validity_end: date) -> date:
        """E = V + grace_days: the last day the subscriber still owns the number."""
        return validity_end + timedelta(days=self.grace_days)

    def grace_cutoff(self, as_of: date) -> date:
        """Numbers whose validity end lies before this date are past grace end on D."""
        return as_of - timedelta(days=self.grace_days)

    def notice_cutoff(self, as_of: date) -> date:
        """A warning final on or before this date gave the minimum notice for D."""
        return as_of - timedelta(days=self.min_notice_days)

    def available_from(self, recycled_on: date) -> date:
        """When a number recycled on that date may be sold."""
        return recycled_on + timedelta(days=self.quarantine_days)

    def resale_from(self, as_of: date) -> date:
        """The earliest a final notice queued on D can announce for the resale: the minimum
        notice from D, then the quarantine."""
        return self.available_from(as_of + timedelta(days=self.min_notice_days))


class Phase(StrEnum):
    """Where an owned number stands on a date."""

    ACTIVE = "active"  # D <= V
    IN_GRACE = "in grace"  # V < D <= E
    PAST_GRACE = "past grace"  # E < D: due for recycling


def grace_end(validity_end: date, rules: Rules) -> date:
    """E = V + grace_days (``Rules.grace_end``)."""
    return rules.grace_end(validity_end)


def days_left(validity_end: date, as_of: date, rules: Rules) -> int:
    """E - D: days until grace end (negative once it has passed)."""
    return (grace_end(validity_end, rules) - as_of).days


def phase(validity_end: date, as_of: date, rules: Rules) -> Phase:
    """Active, in grace, or past grace on date D."""
    if as_of <= validity_end:
        return Phase.ACTIVE
    if as_of <= grace_end(validity_end, rules):
        return Phase.IN_GRACE
    return Phase.PAST_GRACE


def due_stage(remaining_days: int, stages: Sequence[int]) -> int | None:
    """The smallest stage w >= days left; None before the first stage or after grace end."""
    if remaining_days < 0:
        return None
    candidates = [stage for stage in stages if stage >= remaining_days]
    return min(candidates) if candidates else None


def feed_is_stale(
    newest_topup: datetime | None, as_of: date, zone: ZoneInfo, max_age_hours: float
) -> bool:
    """Whether the top-up feed is older than allowed at the end of D (no feed at all is stale)."""
    if newest_topup is None:
        return True
    return newest_topup < end_of_day(as_of, zone) - timedelta(hours=max_age_hours)


def mass_recycle_tripped(would_recycle: int, base: int, max_fraction: float) -> bool:
    """Whether recycling this many of a base of active or in-grace numbers is too many."""
    return would_recycle > max_fraction * base


@dataclass(frozen=True)
class WarningFacts:
    """A warning of the number's current cycle, as the run sees it."""

    stage: int
    state: str
    final_on: date | None = None


@dataclass(frozen=True)
class NumberFacts:
    """What the run knows of one owned number."""

    validity_end: date
    on_hold: bool = False
    warnings: tuple[WarningFacts, ...] = field(default_factory=tuple)


class Action(StrEnum):
    """What one run does to one owned number."""

    NOTHING = "nothing"
    WARN = "warn"
    RECYCLE = "recycle"
    DEFER = "defer"
    HOLD = "hold"


@dataclass(frozen=True)
class Decision:
    """The run's action for a number; the stage for warnings and final notices."""

    action: Action
    stage: int | None = None


def _notice_given(warnings: Iterable[WarningFacts], as_of: date, rules: Rules) -> bool:
    latest_allowed = rules.notice_cutoff(as_of)
    return any(
        warning.state in NOTICE_STATES
        and warning.final_on is not None
        and warning.final_on <= latest_allowed
        for warning in warnings
    )


def decide(number: NumberFacts, as_of: date, rules: Rules) -> Decision:
    """The nightly run's rule for one owned number on date D (guards aside).

    - held: nothing at all, counted as on hold;
    - past grace with a warning of this cycle final at least min_notice_days before D: recycle;
    - past grace otherwise: deferred, with a final notice (stage 0) if the cycle has no warning;
    - inside the warning stages: warn at the due stage unless that stage or a more urgent one
      was already queued this cycle.
    """
    if number.on_hold:
        return Decision(Action.HOLD)
    remaining = days_left(number.validity_end, as_of, rules)
    if remaining < 0:
        if _notice_given(number.warnings, as_of, rules):
            return Decision(Action.RECYCLE)
        if not number.warnings:
            return Decision(Action.DEFER, FINAL_NOTICE_STAGE)
        return Decision(Action.DEFER)
    stage = due_stage(remaining, rules.warning_days)
    if stage is None or any(warning.stage <= stage for warning in number.warnings):
        return Decision(Action.NOTHING)
    return Decision(Action.WARN, stage)
