"""The pure date rules and the set-based SQL run agree on random small bases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.rules import Action, NumberFacts, WarningFacts, decide
from tests.support.properties import shrinking_timeout
from tests.support.world import World

D = date(2026, 11, 20)


@dataclass(frozen=True)
class Spec:
    """One generated number: grace end relative to D, hold, and earlier warnings."""

    distance: int  # D - E
    on_hold: bool
    warnings: tuple[tuple[int, str, int | None], ...]  # stage, state, final days before D


stage_sets = st.lists(st.integers(1, 40), min_size=1, max_size=4, unique=True).map(
    lambda stages: sorted(stages, reverse=True)
)


@st.composite
def specs(draw: st.DrawFn, stages: list[int]) -> Spec:
    chosen = draw(st.lists(st.sampled_from([0, *stages]), max_size=3, unique=True))
    history = []
    for stage in chosen:
        state = draw(st.sampled_from(["pending", "sent", "delivered", "failed", "cancelled"]))
        final = draw(st.integers(0, 20)) if state in ("sent", "delivered", "failed") else None
        history.append((stage, state, final))
    return Spec(
        distance=draw(st.integers(-45, 15)),
        on_hold=draw(st.booleans()),
        warnings=tuple(history),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], int, list[Spec]]:
    stages = draw(stage_sets)
    min_notice = draw(st.integers(0, 10))
    return stages, min_notice, draw(st.lists(specs(stages), min_size=1, max_size=8))


@shrinking_timeout
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_pure_rules_match_sql(world: World, scenario: tuple[list[int], int, list[Spec]]) -> None:
    """For every number, decide() and the nightly run choose the same action: warning stage,
    final notice, recycle or nothing."""
    stages, min_notice, numbers = scenario
    world.reset()
    chosen = world.with_settings(warning_days=stages, min_notice_days=min_notice)
    rules = chosen.settings.rules
    expected = {}
    for spec in numbers:
        validity_end = D - timedelta(days=spec.distance + rules.grace_days)
        msisdn = chosen.add_number(validity_end, on_hold=spec.on_hold)
        facts = []
        for stage, state, final_days in spec.warnings:
            final_on = None if final_days is None else D - timedelta(days=final_days)
            chosen.add_warning(msisdn, stage, state=state, final_on=final_on)
            facts.append(WarningFacts(stage, state, final_on))
        number = NumberFacts(validity_end, spec.on_hold, tuple(facts))
        expected[msisdn] = (decide(number, D, rules), len(spec.warnings))
    chosen.fresh_feed(D)

    report = chosen.run_at_clock(D, allow_mass_recycle=True)

    for msisdn, (decision, earlier) in expected.items():
        new = chosen.warnings_of(msisdn)[earlier:]
        recycled = chosen.number(msisdn).in_pool
        if decision.action is Action.RECYCLE:
            assert recycled, (msisdn, decision)
            assert new == [], (msisdn, decision)
        elif decision.stage is not None:
            assert not recycled, (msisdn, decision)
            assert new == [(1, decision.stage, "pending")], (msisdn, decision)
        else:
            assert not recycled, (msisdn, decision)
            assert new == [], (msisdn, decision)
    decisions = [decision for decision, _ in expected.values()]
    assert report.recycled == sum(d.action is Action.RECYCLE for d in decisions)
    assert report.deferred == sum(d.action is Action.DEFER for d in decisions)
    assert report.on_hold == sum(d.action is Action.HOLD for d in decisions)
