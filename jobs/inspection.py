"""Read-only views for people: the system's status and one number's state and story."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock, local_date
from jobs.database.engine import Database
from jobs.database.locks import run_alive
from jobs.database.schema import (
    api_checks,
    audit_events,
    numbers,
    ownerships,
    resale_pool,
    runs,
    warnings,
)
from jobs.errors import NumberNotFound
from jobs.nightly.records import COMPLETED, run_history
from jobs.phone import number_from_user
from jobs.rules import Phase, Rules, phase
from jobs.safeguards.requests import requests_of
from jobs.sending.outbox import depth
from jobs.sending.receipts import Deliveries, deliveries_by_night
from jobs.settings import Settings, latest_fire_time
from jobs.vocabulary import NOTICE_STATES, RunOutcome, WarningState

__all__ = ["NumberView", "StatusView", "number_view", "status_view"]

# Refusals are judged over the warnings that finished in this span, once there are this many.
_FAILURE_WINDOW = timedelta(hours=24)
_FEWEST_FAILURES = 5


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class _Mapped(Protocol):
    @property
    def _mapping(self) -> Mapping[Any, Any]: ...


def _row_dict(row: _Mapped) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in row._mapping.items()}


@dataclass
class StatusView:
    """Last runs, the outbox (warnings by state, oldest pending), and the base by phase."""

    today: date
    runs: list[dict[str, Any]]
    outbox: dict[str, float | int | str | None]
    numbers_by_state: dict[str, int]
    # Each health check by name, with the sentence that says what is wrong (None when fine).
    checks: dict[str, str | None] = field(default_factory=dict)
    # What became of the last nights' warnings once the gateway had them, per night and stage.
    deliveries: list[Deliveries] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What is wrong, in sentences."""
        return [problem for problem in self.checks.values() if problem is not None]

    @property
    def healthy(self) -> bool:
        """Whether monitoring should be content."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The machine-readable status."""
        return {
            "today": self.today.isoformat(),
            "healthy": self.healthy,
            "checks": {
                name: {"ok": problem is None, "problem": problem}
                for name, problem in self.checks.items()
            },
            "problems": self.problems,
            "runs": self.runs,
            "outbox": self.outbox,
            "numbers": self.numbers_by_state,
            "deliveries": [row.to_json() for row in self.deliveries],
        }


def status_view(
    database: Database, settings: Settings, clock: Clock, rules: Rules, *, last_runs: int = 5
) -> StatusView:
    """Gather the status in one read transaction."""
    now = clock.now()
    today = local_date(now, settings.zone)
    grace_cutoff = rules.grace_cutoff(today)
    with database.read() as connection:
        recent = [
            _row_dict(row)
            for row in connection.execute(
                sa.select(
                    runs.c.id,
                    runs.c.as_of,
                    runs.c.outcome,
                    runs.c.dry_run,
                    runs.c.catch_up,
                    runs.c.started_at,
                    runs.c.finished_at,
                    runs.c.warnings_queued,
                    runs.c.recycled,
                    runs.c.deferred,
                    runs.c.withheld,
                    runs.c.on_hold,
                    runs.c.guards,
                    runs.c.message,
                )
                .order_by(runs.c.id.desc())
                .limit(last_runs)
            )
        ]
        outbox = depth(connection)
        by_state, oldest = outbox.by_state, outbox.oldest_pending
        owned = numbers.c.owner_id.is_not(None)
        held = numbers.c.on_hold.is_(sa.true())
        counts = connection.execute(
            sa.select(
                sa.func.count().filter(owned, ~held, numbers.c.validity_end >= today),
                sa.func.count().filter(
                    owned,
                    ~held,
                    numbers.c.validity_end < today,
                    numbers.c.validity_end >= grace_cutoff,
                ),
                sa.func.count().filter(owned, ~held, numbers.c.validity_end < grace_cutoff),
                sa.func.count().filter(owned, held),
            )
        ).one()
        pool = connection.execute(
            sa.select(
                sa.func.count().filter(resale_pool.c.available_from > today),
                sa.func.count().filter(resale_pool.c.available_from <= today),
            ).where(resale_pool.c.left_at.is_(None))
        ).one()
        oldest_due = connection.execute(
            sa.select(sa.func.min(warnings.c.next_attempt_at)).where(
                warnings.c.state == WarningState.PENDING, warnings.c.next_attempt_at <= now
            )
        ).scalar()
        blocked = connection.execute(
            sa.select(warnings.c.error_code, warnings.c.error_message, sa.func.count().over())
            .where(warnings.c.state == WarningState.BLOCKED)
            .order_by(warnings.c.next_attempt_at.desc())
            .limit(1)
        ).first()
        finished_lately = connection.execute(
            sa.select(warnings.c.state, sa.func.count())
            .where(
                warnings.c.final_at >= now - _FAILURE_WINDOW,
                warnings.c.state.in_(NOTICE_STATES),
            )
            .group_by(warnings.c.state)
        ).all()
        history = run_history(connection)
        deliveries = deliveries_by_night(
            connection, now=now, wait=timedelta(hours=settings.receipt_wait_hours)
        )
        fired = latest_fire_time(settings.run_schedule, settings.zone, now)
        night_done = fired is None or (
            connection.execute(
                sa.select(sa.func.count()).where(
                    COMPLETED, runs.c.as_of >= local_date(fired, settings.zone)
                )
            ).scalar_one()
            > 0
        )
        alive = (
            run_alive(connection, history.running.host, history.running.pid)
            if history.running is not None
            else None
        )
    view = StatusView(
        today=today,
        runs=recent,
        # Waiting now (all of it), then what became of the newest night's warnings.
        outbox={
            "pending": by_state.get(WarningState.PENDING, 0),
            "in_flight": by_state.get(WarningState.SENDING, 0),
            "blocked": by_state.get(WarningState.BLOCKED, 0),
            "oldest_pending_minutes": (
                round((now - oldest).total_seconds() / 60, 1) if oldest is not None else None
            ),
            "night": outbox.night.isoformat() if outbox.night is not None else None,
            "sent": by_state.get(WarningState.SENT, 0),
            "delivered": by_state.get(WarningState.DELIVERED, 0),
            "undelivered": by_state.get(WarningState.UNDELIVERED, 0),
            "failed": by_state.get(WarningState.FAILED, 0),
            "cancelled": by_state.get(WarningState.CANCELLED, 0),
        },
        numbers_by_state={
            "active": counts[0],
            "in_grace": counts[1],
            "past_grace": counts[2],
            "on_hold": counts[3],
            "pool_quarantined": pool[0],
            "pool_available": pool[1],
        },
    )
    view.deliveries = deliveries
    view.checks = {
        "last_run": _running_problem(history.running, alive, now, settings)
        or _last_run_problem(history.last),
        "run_age": _run_age_problem(history.last_completed_at, now, settings),
        # Before any run at all, run_age says it; the schedule has nothing to add.
        "schedule": _schedule_problem(fired, night_done, now, settings)
        if history.last_completed_at is not None
        else None,
        "send_lag": _send_lag_problem(oldest_due, now, settings),
        "gateway": _gateway_problem(blocked),
        "send_failures": _failures_problem(dict(finished_lately), settings),
    }
    return view


def _running_problem(
    running: Any, alive: bool | None, now: datetime, settings: Settings
) -> str | None:
    """A run still recorded as running whose process is gone (its failure could not be
    written: the database went away under it) or that has run for too long."""
    if running is None:
        return None
    since = running.started_at.isoformat(timespec="minutes")
    if alive is False:
        return (
            f"run {running.id} for {running.as_of.isoformat()} is recorded as running since "
            f"{since}, but nothing holds the run lock: it died without a record; the next run "
            "redoes its work"
        )
    if now - running.started_at > timedelta(minutes=settings.max_run_minutes):
        return (
            f"run {running.id} for {running.as_of.isoformat()} has been running since {since}, "
            f"more than {settings.max_run_minutes:g} min"
        )
    return None


def _last_run_problem(last_real: Any) -> str | None:
    failures = (RunOutcome.FAILED, RunOutcome.INTERRUPTED, RunOutcome.ABANDONED)
    if last_real is not None and last_real.outcome in failures:
        return f"the last run ({last_real.id}) {last_real.outcome}"
    return None


def _schedule_problem(
    fired: datetime | None, night_done: bool, now: datetime, settings: Settings
) -> str | None:
    """The schedule fired more than run_grace_minutes ago and no run has completed for that
    night: the daemon missed it, or keeps failing (it retries)."""
    if fired is None or night_done or now - fired <= timedelta(minutes=settings.run_grace_minutes):
        return None
    local = fired.astimezone(settings.zone)
    return (
        f"the nightly run scheduled at {local:%Y-%m-%d %H:%M} ({settings.run_schedule}) has not "
        f"completed {(now - fired).total_seconds() / 60:.0f} min later"
    )


def _run_age_problem(
    last_success: datetime | None, now: datetime, settings: Settings
) -> str | None:
    if last_success is None:
        return "no nightly run has succeeded yet"
    if now - last_success > timedelta(hours=settings.max_run_age_hours):
        return (
            f"the newest successful run finished {last_success.isoformat(timespec='minutes')}, "
            f"more than {settings.max_run_age_hours:g} h ago"
        )
    return None


def _send_lag_problem(oldest_due: datetime | None, now: datetime, settings: Settings) -> str | None:
    """A due warning that has waited too long inside sending hours, counted across days
    (waiting outside them is the rule, not a lag)."""
    if oldest_due is None:
        return None
    waiting = settings.window.time_inside(oldest_due, now, settings.zone)
    if waiting <= timedelta(minutes=settings.max_send_lag_minutes):
        return None
    return (
        f"a due warning has waited {waiting.total_seconds() / 60:.0f} min inside sending hours, "
        f"more than {settings.max_send_lag_minutes:g} min: is a sender running?"
    )


def _gateway_problem(blocked: Any) -> str | None:
    """Warnings the gateway would not take for a reason on the operator's side."""
    if blocked is None:
        return None
    code, detail, count = blocked
    return (
        f"{count} warning{'' if count == 1 else 's'} could not be sent for a reason on the "
        f"operator's side (last: {detail or code}); they count as no notice until sent: fix "
        "the gateway settings, then `recycler send` sends them"
    )


def _failures_problem(finished: dict[str, int], settings: Settings) -> str | None:
    """More refusals than acceptances lately: the numbers, or the gateway, need a look."""
    failed = finished.get(WarningState.FAILED, 0)
    total = sum(finished.values())
    if failed < _FEWEST_FAILURES or failed <= settings.max_failed_share * total:
        return None
    return (
        f"{failed} of the {total} warnings finished in the last 24 h were refused for their "
        f"numbers, more than {settings.max_failed_share:.0%}"
    )


def _story(
    connection: Connection, table: sa.Table, msisdn: str, *columns: str
) -> list[dict[str, Any]]:
    """One number's rows of a table, oldest first, as plain values."""
    rows = connection.execute(
        sa.select(*(table.c[name] for name in columns))
        .where(table.c.msisdn == msisdn)
        .order_by(table.c.id)
    )
    return [_row_dict(row) for row in rows]


@dataclass
class NumberView:
    """One number: where it stands today and everything that happened to it."""

    msisdn: str
    state: str
    owner_id: str | None
    language: str | None
    validity_end: date | None
    grace_end: date | None
    days_left: int | None
    cycle: int
    on_hold: bool
    warnings: list[dict[str, Any]]
    pool: list[dict[str, Any]]
    ownerships: list[dict[str, Any]]
    events: list[dict[str, Any]]
    # Who asked about the number through the reassigned API, and what they were told.
    checks: list[dict[str, Any]] = field(default_factory=list)
    # Every request to take it from its owner: evidence, notice, decision (four eyes).
    requests: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable view."""
        return {
            "msisdn": self.msisdn,
            "state": self.state,
            "owner_id": self.owner_id,
            "language": self.language,
            "validity_end": _json_value(self.validity_end),
            "grace_end": _json_value(self.grace_end),
            "days_left": self.days_left,
            "cycle": self.cycle,
            "on_hold": self.on_hold,
            "warnings": self.warnings,
            "pool": self.pool,
            "ownerships": self.ownerships,
            "events": self.events,
            "checks": self.checks,
            "requests": self.requests,
        }


def number_view(
    database: Database, settings: Settings, clock: Clock, rules: Rules, text: str
) -> NumberView:
    """Look one number up; refuses malformed and unknown numbers with a clear message."""
    msisdn = number_from_user(text, settings.default_region)
    today = local_date(clock.now(), settings.zone)
    with database.read() as connection:
        row = connection.execute(sa.select(numbers).where(numbers.c.msisdn == msisdn)).first()
        if row is None:
            raise NumberNotFound(f"recycler knows no number {msisdn}")
        warning_list = _story(
            connection,
            warnings,
            msisdn,
            "id",
            "kind",
            "cycle",
            "stage",
            "state",
            "queued_on",
            "final_on",
            "grace_end",
            "attempts",
            "error_code",
            "cancel_reason",
            "gateway_message_id",
        )
        pool_list = _story(
            connection,
            resale_pool,
            msisdn,
            "entered_on",
            "available_from",
            "recycled_by_run_id",
            "left_on",
            "left_cause",
        )
        ownership_list = _story(
            connection,
            ownerships,
            msisdn,
            "owner_id",
            "started_at",
            "start_cause",
            "started_by",
            "ended_at",
            "end_cause",
            "ended_by",
            "final_validity_end",
            "reason",
            "consent_current",
            "consent_new",
            "owner_since",
        )
        checks = _story(
            connection,
            api_checks,
            msisdn,
            "occurred_at",
            "client_id",
            "specified_date",
            "recycled",
            "code",
            "correlator",
        )
        requests = [
            request.to_json() for request in requests_of(connection, clock.now(), msisdn=msisdn)
        ]
        events = [
            {key: value for key, value in event.items() if value is not None}
            for event in _story(
                connection,
                audit_events,
                msisdn,
                "occurred_at",
                "event_type",
                "actor",
                "owner_id",
                "cycle",
                "stage",
                "warning_id",
                "validity_end_before",
                "validity_end_after",
                "reason",
                "details",
            )
        ]
    validity_end: date | None = row.validity_end
    grace_end = rules.grace_end(validity_end) if validity_end else None
    if row.owner_id is None:
        current_pool = [entry for entry in pool_list if entry["left_on"] is None]
        available = current_pool and date.fromisoformat(current_pool[0]["available_from"]) <= today
        state = "in pool (available)" if available else "in pool (quarantined)"
    elif row.on_hold:
        state = "on hold"
    else:
        assert validity_end is not None
        state = str(phase(validity_end, today, rules))
        if state == Phase.PAST_GRACE:
            state = "past grace (awaiting recycle)"
    return NumberView(
        msisdn=msisdn,
        state=state,
        owner_id=row.owner_id,
        language=row.language,
        validity_end=validity_end,
        grace_end=grace_end,
        days_left=(grace_end - today).days if grace_end else None,
        cycle=row.cycle,
        on_hold=row.on_hold,
        warnings=warning_list,
        pool=pool_list,
        ownerships=ownership_list,
        events=events,
        checks=checks,
        requests=requests,
    )
