"""The console's read-only views: the nights as charts, the forecast, the audit search.

Charts are drawn here as SVG geometry (bars with their heights), so that the page needs no
script and nothing from the internet.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobs.clock import Clock, end_of_day, local_date
from jobs.database.engine import Database
from jobs.database.schema import api_checks, audit_events, numbers, runs, warnings
from jobs.sending.outbox import depth
from jobs.settings import Settings
from jobs.vocabulary import MessageKind, RunOutcome, WarningState

__all__ = [
    "AUDIT_PAGE",
    "AuditQuery",
    "Bar",
    "Chart",
    "audit_page",
    "checks_page",
    "forecast",
    "nights",
]

AUDIT_PAGE = 50
_WIDTH, _HEIGHT = 960, 140


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass
class Chart:
    """One series as bars, one per day, scaled to the chart's height."""

    title: str
    colour: str
    points: list[tuple[str, int]]
    bars: list[Bar] = field(default_factory=list)
    top: int = 0
    width: int = _WIDTH
    height: int = _HEIGHT

    def __post_init__(self) -> None:
        self.top = max((value for _, value in self.points), default=0)
        step = self.width / max(len(self.points), 1)
        for index, (label, value) in enumerate(self.points):
            height = (value / self.top) * (self.height - 20) if self.top else 0
            self.bars.append(
                Bar(
                    x=index * step + 1,
                    y=self.height - 14 - height,
                    width=max(step - 2, 1),
                    height=height,
                    label=label,
                    value=value,
                )
            )


def nights(database: Database, settings: Settings, *, count: int = 60) -> dict[str, Any]:
    """The last `count` real runs, oldest first, as charts; and the outbox by state."""
    with database.read() as connection:
        rows = list(
            connection.execute(
                sa.select(runs)
                .where(runs.c.dry_run.is_(sa.false()), runs.c.outcome != RunOutcome.COVERED)
                .order_by(runs.c.id.desc())
                .limit(count)
            )
        )[::-1]
        days = [row.as_of for row in rows]
        finished: dict[tuple[date, str], int] = {}
        if days:
            # What the senders finished on each of those days: warnings only (owners' notices
            # are not the night's work).
            for final_on, state, total in connection.execute(
                sa.select(warnings.c.final_on, warnings.c.state, sa.func.count())
                .where(
                    # By the time (its index), not the local date: the same days, found
                    # without reading the years of messages before them.
                    warnings.c.final_at >= end_of_day(min(days) - timedelta(days=1), settings.zone),
                    warnings.c.final_at < end_of_day(max(days), settings.zone),
                    warnings.c.kind == MessageKind.WARNING,
                )
                .group_by(warnings.c.final_on, warnings.c.state)
            ):
                finished[(final_on, state)] = total
        outbox = depth(connection)
    labels = [row.as_of.isoformat() for row in rows]

    def series(values: list[int]) -> list[tuple[str, int]]:
        return list(zip(labels, values, strict=True))

    stages = sorted(
        {int(stage) for row in rows for stage in (row.warnings_queued or {})}, reverse=True
    )
    charts = [
        Chart(
            f"warnings queued, {stage} days before grace end" if stage else "final notices queued",
            "#0b5cad",
            series([int((row.warnings_queued or {}).get(str(stage), 0)) for row in rows]),
        )
        for stage in stages
    ]
    charts += [
        Chart(
            "accepted by the gateway (sent, delivered or undelivered since)",
            "#1b6e2d",
            series(
                [
                    sum(
                        finished.get((day, state), 0)
                        for state in (
                            WarningState.SENT,
                            WarningState.DELIVERED,
                            WarningState.UNDELIVERED,
                        )
                    )
                    for day in days
                ]
            ),
        ),
        Chart(
            "failed for the number",
            "#a61b1b",
            series([finished.get((day, WarningState.FAILED), 0) for day in days]),
        ),
        Chart("recycled", "#6b3fa0", series([row.recycled or 0 for row in rows])),
        Chart(
            "deferred for want of notice", "#b7791f", series([row.deferred or 0 for row in rows])
        ),
        Chart("withheld by a guard", "#7a4a00", series([row.withheld or 0 for row in rows])),
        Chart("guards tripped", "#a61b1b", series([len(row.guards or []) for row in rows])),
    ]
    return {
        "runs": rows,
        "charts": charts,
        "outbox": {str(state): outbox.by_state.get(state, 0) for state in WarningState},
        "outbox_night": outbox.night,
    }


def forecast(
    database: Database, settings: Settings, clock: Clock, *, days: int = 90
) -> dict[str, Any]:
    """For each of the next `days` local days: how many owned, unheld numbers reach each
    warning stage on it, and how many reach their grace end (the recycles to expect if nobody
    tops up)."""
    rules = settings.rules
    today = local_date(clock.now(), settings.zone)
    last = today + timedelta(days=days - 1)
    stages = sorted(rules.warning_days, reverse=True)
    earliest = today - timedelta(days=rules.grace_days)
    latest = last - timedelta(days=rules.grace_days) + timedelta(days=max(stages, default=0))
    with database.read() as connection:
        by_validity: dict[date, int] = dict(
            connection.execute(
                sa.select(numbers.c.validity_end, sa.func.count())
                .where(
                    numbers.c.owner_id.is_not(None),
                    numbers.c.on_hold.is_(sa.false()),
                    numbers.c.validity_end.between(earliest, latest),
                )
                .group_by(numbers.c.validity_end)
            ).all()
        )
    table = []
    for offset in range(days):
        day = today + timedelta(days=offset)
        grace_validity = day - timedelta(days=rules.grace_days)
        row: dict[str, Any] = {"day": day}
        for stage in stages:
            row[f"stage_{stage}"] = by_validity.get(grace_validity + timedelta(days=stage), 0)
        row["grace_end"] = by_validity.get(grace_validity, 0)
        table.append(row)
    chart = Chart(
        "numbers reaching their grace end (recycles to expect if nobody tops up)",
        "#6b3fa0",
        [(row["day"].isoformat(), row["grace_end"]) for row in table],
    )
    return {"stages": stages, "table": table, "chart": chart, "today": today}


def forecast_csv(view: dict[str, Any]) -> str:
    out = io.StringIO()
    columns = ["day", *(f"stage_{stage}" for stage in view["stages"]), "grace_end"]
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in view["table"]:
        writer.writerow({**row, "day": row["day"].isoformat()})
    return out.getvalue()


@dataclass(frozen=True)
class AuditQuery:
    """What the audit search asks for; empty fields ask for everything."""

    msisdn: str | None = None
    actor: str | None = None
    event_type: str | None = None
    since: date | None = None  # local dates, both included
    until: date | None = None


def audit_page(
    database: Database,
    settings: Settings,
    search: AuditQuery,
    *,
    page: int,
    size: int | None = AUDIT_PAGE,
) -> tuple[list[dict[str, Any]], int]:
    """The events that match, newest first, one page of them; and how many match in all."""
    conditions = []
    if search.msisdn:
        conditions.append(audit_events.c.msisdn == search.msisdn)
    if search.actor:
        conditions.append(audit_events.c.actor == search.actor)
    if search.event_type:
        conditions.append(audit_events.c.event_type == search.event_type)
    if search.since:
        conditions.append(audit_events.c.occurred_at >= _start_of(search.since, settings))
    if search.until:
        conditions.append(audit_events.c.occurred_at < end_of_day(search.until, settings.zone))
    query = sa.select(audit_events).where(*conditions).order_by(audit_events.c.id.desc())
    with database.read() as connection:
        total = connection.execute(
            sa.select(sa.func.count()).select_from(audit_events).where(*conditions)
        ).scalar_one()
        if size is not None:
            query = query.limit(size).offset(page * size)
        rows = [dict(row._mapping) for row in connection.execute(query)]
    return rows, int(total)


def checks_page(
    database: Database, *, page: int, size: int = AUDIT_PAGE
) -> tuple[list[dict[str, Any]], int]:
    """The banks' checks through the reassigned API, newest first, one page; and how many."""
    with database.read() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(api_checks)).scalar_one()
        rows = [
            dict(row._mapping)
            for row in connection.execute(
                sa.select(api_checks)
                .order_by(api_checks.c.id.desc())
                .limit(size)
                .offset(page * size)
            )
        ]
    return rows, int(total)


def audit_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    columns = [
        "id",
        "occurred_at",
        "event_type",
        "msisdn",
        "actor",
        "owner_id",
        "reason",
        "details",
    ]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {**row, "occurred_at": row["occurred_at"].isoformat() if row["occurred_at"] else ""}
        )
    return out.getvalue()


def _start_of(day: date, settings: Settings) -> datetime:
    return end_of_day(day - timedelta(days=1), settings.zone)
