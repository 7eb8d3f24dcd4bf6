"""Random histories of top-ups, nightly runs, sends, holds, sales, transfers and reinstatements:
whatever happens, no number is recycled early, no owner changes without a permitted cause and an
audit event, and the reassigned check agrees with the ownership history."""

from __future__ import annotations

import random
from datetime import timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jobs.database.schema import audit_events, numbers, ownerships, runs
from jobs.safeguards.reassigned import reassigned
from jobs.vocabulary import AuditEvent, Verdict
from tests.support.histories import START, History
from tests.support.properties import shrinking_timeout
from tests.support.world import World

NUMBERS = 3

actions = st.lists(
    st.one_of(
        # Nights come often, so that notice is given and histories reach recycling.
        st.tuples(st.just("run"), st.integers(1, 15)),
        st.tuples(st.just("run"), st.integers(1, 15)),
        st.tuples(st.just("run"), st.integers(1, 15)),
        st.tuples(st.just("run"), st.integers(1, 15)),
        st.tuples(st.just("send"), st.just(0)),
        st.tuples(st.just("topup"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("hold"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("release"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("sell"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("transfer"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("reinstate"), st.integers(0, NUMBERS - 1)),
        st.tuples(st.just("force"), st.integers(0, NUMBERS - 1)),
    ),
    min_size=6,
    max_size=24,
)


@shrinking_timeout
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    # Validity ends from well past grace end to a little ahead: most histories reach recycling.
    offsets=st.lists(st.integers(-110, 0), min_size=NUMBERS, max_size=NUMBERS),
    steps=actions,
    seed=st.integers(0, 1000),
)
def test_random_histories(
    world: World, offsets: list[int], steps: list[tuple[str, int]], seed: int
) -> None:
    """The three invariants of the safeguards, after any sequence of operations."""
    world.reset()
    history = History(world, offsets)
    for action, value in steps:
        history.act(action, value)
    grace = timedelta(days=world.settings.grace_days)
    with world.database.read() as connection:
        recycles = connection.execute(
            sa.select(ownerships.c.final_validity_end, runs.c.as_of)
            .join(runs, runs.c.id == ownerships.c.run_id)
            .where(ownerships.c.end_cause == "recycle")
        ).all()
        history_rows = connection.execute(
            sa.select(ownerships).order_by(ownerships.c.msisdn, ownerships.c.id)
        ).all()
        events = connection.execute(
            sa.select(audit_events.c.msisdn, audit_events.c.event_type, audit_events.c.owner_id)
        ).all()
        owners_now = dict(connection.execute(sa.select(numbers.c.msisdn, numbers.c.owner_id)).all())

    event(f"recycles: {min(len(recycles), 3)}")
    # 1. Never recycled on or before its grace end.
    for final_validity_end, as_of in recycles:
        assert as_of > final_validity_end + grace, (final_validity_end, as_of)

    # 2. Every owner change has a permitted cause and an audit event; the owner on the number
    #    is the one of its open ownership.
    permitted = {
        "sale": AuditEvent.OWNERSHIP_SOLD,
        "transfer": AuditEvent.OWNERSHIP_TRANSFERRED,
        "reinstatement": AuditEvent.OWNERSHIP_REINSTATED,
    }
    recorded = {(msisdn, kind, owner) for msisdn, kind, owner in events}
    by_number: dict[str, list[object]] = {}
    for row in history_rows:
        by_number.setdefault(row.msisdn, []).append(row)
        if row.start_cause == "import":
            continue
        assert row.start_cause in permitted, row
        assert (row.msisdn, permitted[row.start_cause], row.owner_id) in recorded, row
        if row.start_cause == "transfer":
            assert row.consent_current
            assert row.consent_new
            # Four eyes: every transfer carried out an approved request.
            assert row.request_id is not None, row
        if row.end_cause == "recycle":
            assert (row.msisdn, AuditEvent.NUMBER_RECYCLED, row.owner_id) in recorded
    for msisdn, rows in by_number.items():
        open_rows = [row for row in rows if row.ended_at is None]  # type: ignore[attr-defined]
        assert len(open_rows) <= 1
        expected_owner = open_rows[0].owner_id if open_rows else None  # type: ignore[attr-defined]
        assert owners_now[msisdn] == expected_owner

    # 3. reassigned agrees with the ownership history: "no" only when the open ownership
    #    began on or before the date; "unknown" before the first one began.
    zone = world.settings.zone
    today = history.today()
    rng = random.Random(seed)
    for msisdn, rows in by_number.items():
        starts = [row.started_at.astimezone(zone).date() for row in rows]  # type: ignore[attr-defined]
        current = [
            row.started_at.astimezone(zone).date()  # type: ignore[attr-defined]
            for row in rows
            if row.ended_at is None  # type: ignore[attr-defined]
        ]
        for _ in range(4):
            since = min(today, START + timedelta(days=rng.randint(-5, 200)))
            if since < min(starts):
                expected = Verdict.BEFORE_RECORDS
            elif current and current[0] <= since:
                expected = Verdict.SAME_OWNER
            else:
                expected = Verdict.REASSIGNED
            answer = reassigned(world.database, world.settings, world.clock, msisdn, since)
            assert answer.verdict is expected, (msisdn, since, rows)
