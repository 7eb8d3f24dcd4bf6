"""The record every run leaves: as-of date, times, outcome, counts, guards, dry run or not."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.database.engine import Database
from jobs.database.schema import runs
from jobs.vocabulary import RunOutcome

__all__ = [
    "COMPLETED",
    "RunHistory",
    "RunReport",
    "abandon_dead_runs",
    "finish_run",
    "record_outcome",
    "run_history",
    "start_run",
]

# A run that did the night's work: real (not dry), and succeeded or withheld only recycling.
COMPLETED = sa.and_(
    runs.c.dry_run.is_(sa.false()),
    runs.c.outcome.in_((RunOutcome.SUCCEEDED, RunOutcome.WITHHELD)),
)


@dataclass
class RunReport:
    """What one run did; its JSON form is the ``run --json`` object of the README."""

    run_id: int
    as_of: date
    dry_run: bool
    started_at: datetime
    catch_up: bool = False
    outcome: RunOutcome = RunOutcome.RUNNING
    finished_at: datetime | None = None
    warnings_queued: dict[int, int] = field(default_factory=dict)
    recycled: int = 0
    deferred: int = 0
    withheld: int = 0
    on_hold: int = 0
    guards: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def start_over(self) -> None:
        """Forget what an attempt of the night's transaction found (it was rolled back)."""
        self.outcome = RunOutcome.RUNNING
        self.finished_at = None
        self.warnings_queued = {}
        self.recycled = self.deferred = self.withheld = self.on_hold = 0
        self.guards = []
        self.messages = []

    def conclude(self, now: datetime) -> None:
        """The outcome of a night whose work is done: withheld when a guard spoke."""
        if self.outcome is RunOutcome.RUNNING:
            self.outcome = RunOutcome.WITHHELD if self.guards else RunOutcome.SUCCEEDED
        self.finished_at = now

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "catch_up": self.catch_up,
            "outcome": self.outcome,
            "warnings_queued": {str(stage): count for stage, count in self.warnings_queued.items()},
            "recycled": self.recycled,
            "deferred": self.deferred,
            "withheld": self.withheld,
            "on_hold": self.on_hold,
            "guards": list(self.guards),
            "messages": list(self.messages),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def abandon_dead_runs(database: Database, now: datetime) -> list[int]:
    """Close the records of runs whose process died; called only while holding the run lock,
    so no run marked as running can still be alive."""
    with database.write() as connection:
        rows = connection.execute(
            sa.update(runs)
            .where(runs.c.outcome == RunOutcome.RUNNING)
            .values(
                outcome=RunOutcome.ABANDONED,
                finished_at=now,
                message="the process ended before finishing the run; the next run redid its work",
            )
            .returning(runs.c.id)
        )
        return [row.id for row in rows]


def start_run(
    database: Database, *, as_of: date, dry_run: bool, catch_up: bool, actor: str, now: datetime
) -> int:
    """Write the run's record as running; returns the run id."""
    with database.write() as connection:
        return int(
            connection.execute(
                runs.insert()
                .values(
                    as_of=as_of,
                    dry_run=dry_run,
                    catch_up=catch_up,
                    started_at=now,
                    outcome=RunOutcome.RUNNING,
                    actor=actor,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                )
                .returning(runs.c.id)
            ).scalar_one()
        )


def finish_run(database: Database, report: RunReport) -> None:
    """Write the run's outcome and counts in a transaction of their own."""
    with database.write() as connection:
        record_outcome(connection, report)


def record_outcome(connection: Connection, report: RunReport) -> None:
    """Write the run's outcome and counts on the connection given (the night's own
    transaction, so that the work and its record commit together)."""
    connection.execute(
        sa.update(runs)
        .where(runs.c.id == report.run_id)
        .values(
            outcome=report.outcome,
            finished_at=report.finished_at,
            warnings_queued={str(stage): n for stage, n in report.warnings_queued.items()},
            recycled=report.recycled,
            deferred=report.deferred,
            withheld=report.withheld,
            on_hold=report.on_hold,
            guards=report.guards,
            message="; ".join(report.messages) or None,
        )
    )


@dataclass(frozen=True)
class RunHistory:
    """What health checks and metrics need to know of past runs."""

    # The newest real run that is over and did (or failed to do) a night's work, as a row;
    # None before any. A covered run did nothing and says nothing about health.
    last: Any
    last_completed_at: datetime | None  # when the newest completed run finished
    # The newest real run still recorded as running, if it is newer than `last`.
    running: Any = None


def run_history(connection: Connection) -> RunHistory:
    """The newest finished real run and the newest completion, in two indexed queries."""
    last = connection.execute(
        sa.select(runs)
        .where(
            runs.c.dry_run.is_(sa.false()),
            runs.c.outcome.not_in((RunOutcome.RUNNING, RunOutcome.COVERED)),
        )
        .order_by(runs.c.id.desc())
        .limit(1)
    ).first()
    completed_at = connection.execute(
        sa.select(sa.func.max(runs.c.finished_at)).where(COMPLETED)
    ).scalar()
    running = connection.execute(
        sa.select(runs)
        .where(runs.c.dry_run.is_(sa.false()), runs.c.outcome == RunOutcome.RUNNING)
        .order_by(runs.c.id.desc())
        .limit(1)
    ).first()
    if running is not None and last is not None and running.id < last.id:
        running = None
    return RunHistory(last, completed_at, running)
