"""The nightly run for one date: warnings, recycling, minimum notice, guards, and its record."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from jobs.clock import EARLIEST_DATE, Clock, local_date
from jobs.database.engine import BaseLock, Database, retried
from jobs.database.locks import LockBusy, run_lock
from jobs.database.schema import runs
from jobs.errors import (
    AlreadyRan,
    FutureDateError,
    InputRefused,
    RecyclerError,
    RunInProgress,
    RunInterrupted,
)
from jobs.failpoints import failpoint
from jobs.nightly import steps
from jobs.nightly.frames import build_frames, load_frames
from jobs.nightly.records import (
    COMPLETED,
    RunReport,
    abandon_dead_runs,
    finish_run,
    record_outcome,
    start_run,
)
from jobs.rules import feed_is_stale, mass_recycle_tripped
from jobs.settings import Settings
from jobs.vocabulary import Guard, Language, RunOutcome
from notifier.templates import TemplateBook

__all__ = ["LONGEST_LOOK_AHEAD_DAYS", "RunOptions", "run_nightly"]

# How far ahead a dry run may look: a year and a day covers every question about the calendar.
LONGEST_LOOK_AHEAD_DAYS = 366

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How this run was asked for."""

    as_of: date | None = None  # None: today in the operator's time zone
    dry_run: bool = False
    allow_mass_recycle: bool = False
    catch_up: bool = False
    actor: str = "recycler"
    lock_wait_seconds: float = 0.0
    # Set by a signal handler: the run stops after the statement in progress, keeps nothing.
    stop: threading.Event | None = None
    # For the daemon: skip (AlreadyRan) when a run for the date has already completed.
    once_per_date: bool = False


def run_nightly(
    database: Database,
    settings: Settings,
    templates: TemplateBook,
    clock: Clock,
    options: RunOptions,
) -> RunReport:
    """Run the nightly job for one date and return what it did.

    Raises FutureDateError for a real run after today (nothing is written), RunInProgress when
    another run holds the lock. Any other failure is recorded on the run and raised again.
    """
    today = local_date(clock.now(), settings.zone)
    as_of = options.as_of or today
    if as_of > today and not options.dry_run:
        raise FutureDateError(
            f"refusing to run for {as_of.isoformat()}: it is after today ({today.isoformat()}) "
            f"in {settings.timezone}, and would recycle numbers early. "
            "Use --dry-run to look ahead."
        )
    if as_of > today + timedelta(days=LONGEST_LOOK_AHEAD_DAYS):
        raise InputRefused(
            f"refusing to look at {as_of.isoformat()}: it is more than "
            f"{LONGEST_LOOK_AHEAD_DAYS} days ahead of today ({today.isoformat()})"
        )
    if as_of < EARLIEST_DATE:
        raise InputRefused(
            f"refusing to run for {as_of.isoformat()}: it is before {EARLIEST_DATE.isoformat()}, "
            "earlier than any date recycler keeps"
        )
    missing = set(Language) - templates.languages
    if missing:
        raise RecyclerError(f"no warning templates for languages {sorted(missing)}")
    try:
        with run_lock(database, wait_seconds=options.lock_wait_seconds, stop=options.stop):
            return _locked_run(database, settings, templates, clock, options, as_of, today)
    except LockBusy:
        raise RunInProgress(_lock_holder_message(database)) from None


def _locked_run(
    database: Database,
    settings: Settings,
    templates: TemplateBook,
    clock: Clock,
    options: RunOptions,
    as_of: date,
    today: date,
) -> RunReport:
    abandoned = abandon_dead_runs(database, clock.now())
    if abandoned:
        log.warning("run.abandoned_found", run_ids=abandoned)
    if options.once_per_date and _completed(database, as_of):
        raise AlreadyRan(f"the run for {as_of.isoformat()} has already completed")
    started_at = clock.now()
    run_id = start_run(
        database,
        as_of=as_of,
        dry_run=options.dry_run,
        catch_up=options.catch_up,
        actor=options.actor,
        now=started_at,
    )
    report = RunReport(
        run_id=run_id,
        as_of=as_of,
        dry_run=options.dry_run,
        started_at=started_at,
        catch_up=options.catch_up,
    )
    structlog.contextvars.bind_contextvars(run_id=run_id)
    log.info(
        "run.started", as_of=as_of.isoformat(), dry_run=options.dry_run, catch_up=options.catch_up
    )
    checkpoint = _Checkpoints(options.stop)
    try:
        checkpoint("run.started")
        scope = steps.RunScope(
            run_id=run_id,
            as_of=as_of,
            now=started_at,
            rules=settings.rules,
            region=settings.default_region,
            today=today,
        )
        _night(database, scope, settings, templates, clock, options, report, checkpoint)
        failpoint("run.committed")
        if options.dry_run:
            # The night's own transaction was rolled back, its record with it.
            finish_run(database, report)
    except BaseException as error:
        # A statement cancelled because a stop was asked for is an interruption too.
        asked_to_stop = options.stop is not None and options.stop.is_set()
        interrupted = asked_to_stop or isinstance(
            error, RunInterrupted | KeyboardInterrupt | SystemExit
        )
        report.outcome = RunOutcome.INTERRUPTED if interrupted else RunOutcome.FAILED
        report.messages.append(f"{type(error).__name__}: {error}")
        report.warnings_queued, report.recycled = {}, 0
        report.finished_at = clock.now()
        _record_failure(database, report)
        if not interrupted:
            log.error("run.failed", error=str(error))
            raise
        log.warning("run.interrupted", error=str(error).splitlines()[0] if str(error) else "")
        if isinstance(error, RunInterrupted | KeyboardInterrupt | SystemExit):
            raise
        raise RunInterrupted("stopped by a signal; nothing of this run was kept") from error
    finally:
        structlog.contextvars.unbind_contextvars("run_id")
    log.info(
        "run.finished",
        run_id=run_id,
        outcome=report.outcome,
        warnings_queued=report.warnings_queued,
        recycled=report.recycled,
        deferred=report.deferred,
        withheld=report.withheld,
        guards=report.guards,
    )
    return report


@retried
def _night(
    database: Database,
    scope: steps.RunScope,
    settings: Settings,
    templates: TemplateBook,
    clock: Clock,
    options: RunOptions,
    report: RunReport,
    checkpoint: _Checkpoints,
) -> None:
    """The night's work in one transaction, its record written in that same transaction: a
    run that committed its work always says so, with its counts, even if nothing can be
    written after the commit."""
    report.start_over()
    with database.write(
        commit=not options.dry_run,
        lock=BaseLock.EXCLUSIVE,
        statement_seconds=settings.run_statement_timeout_seconds,
    ) as connection:
        _apply(connection, scope, settings, templates, options, report, checkpoint)
        report.conclude(clock.now())
        record_outcome(connection, report)
        checkpoint("run.before_commit")


def _record_failure(database: Database, report: RunReport) -> None:
    """Write why the run failed, if the database still lets us; if it does not (it went away
    mid-run), the record stays `running` and counts as failed for health once the run's lock
    is gone (``recycler status``), and the next run marks it abandoned."""
    try:
        finish_run(database, report)
    except Exception as error:  # the first failure is the one to report
        log.error("run.record_failed", error=str(error).splitlines()[0])


def _apply(
    connection: Connection,
    scope: steps.RunScope,
    settings: Settings,
    templates: TemplateBook,
    options: RunOptions,
    report: RunReport,
    checkpoint: _Checkpoints,
) -> None:
    newest = steps.newest_completed_run(connection, scope.run_id)
    if newest is not None and scope.as_of < newest:
        # The rules are state-based: the run for the later date already did this date's work,
        # and acting now on an older view of the calendar could only add a late warning.
        _count(connection, scope, report)
        report.messages.append(
            f"{scope.as_of.isoformat()} is before the newest completed run "
            f"({newest.isoformat()}), which already covered it: nothing queued or recycled"
        )
        report.outcome = RunOutcome.COVERED
        return
    load_frames(connection, build_frames(scope.as_of, scope.rules, templates))
    steps.prepare_queue(connection)
    steps.queue_warnings(connection, scope, steps.take_changes(connection, scope))
    checkpoint("run.warnings_queued")

    counts = _count(connection, scope, report)
    feed = steps.newest_feed(connection)
    if feed_is_stale(feed, scope.as_of, settings.zone, settings.max_feed_age_hours):
        report.guards.append(Guard.STALE_FEED.value)
        seen = feed.isoformat() if feed else "no top-up was ever imported"
        report.messages.append(
            f"recycling withheld: the top-up feed is stale (newest: {seen}; allowed age "
            f"{settings.max_feed_age_hours:g} h at the end of {scope.as_of.isoformat()})"
        )
    if not options.allow_mass_recycle and mass_recycle_tripped(
        counts.notice_given, counts.active_or_in_grace, settings.max_recycle_fraction
    ):
        report.guards.append(Guard.MASS_RECYCLE.value)
        report.messages.append(
            f"recycling withheld: {counts.notice_given} numbers would be recycled, more than "
            f"{settings.max_recycle_fraction:.2%} of the {counts.active_or_in_grace} active or "
            "in-grace numbers; check the data, then rerun with --allow-mass-recycle"
        )
    if report.guards:
        report.withheld = counts.notice_given
    else:
        # The very numbers counted, chosen under this run's lock: nothing can change them
        # meanwhile, so the guards judged what is recycled.
        report.recycled = steps.recycle(connection, scope, counts.notice_given)
    checkpoint("run.recycled")

    steps.queue_final_notices(connection, scope)
    checkpoint("run.final_notices_queued")
    steps.audit_queued_warnings(connection, scope)
    steps.audit_deferrals(connection, scope, any_due=counts.notice_given > 0)
    report.warnings_queued = steps.warnings_queued_by_stage(connection, scope.run_id)


def _count(connection: Connection, scope: steps.RunScope, report: RunReport) -> steps.BaseCounts:
    """The base's counts, into the report. Whether any warning gave notice at all is asked first:
    when none did, no number of the backlog is asked (see ``steps.any_notice_given``)."""
    counts = steps.count_base(
        connection, scope, notice_possible=steps.any_notice_given(connection, scope)
    )
    report.on_hold = counts.on_hold
    report.deferred = counts.past_grace - counts.notice_given
    return counts


class _Checkpoints:
    """Between two statements of the run: act on failpoints, and stop if asked to."""

    def __init__(self, stop: threading.Event | None) -> None:
        self.stop = stop

    def __call__(self, name: str) -> None:
        failpoint(name)
        if self.stop is not None and self.stop.is_set():
            raise RunInterrupted(f"stopped at {name}; nothing of this run was kept")


def _completed(database: Database, as_of: date) -> bool:
    with database.read() as connection:
        return (
            connection.execute(
                sa.select(sa.func.count()).where(runs.c.as_of == as_of, COMPLETED)
            ).scalar_one()
            > 0
        )


def _lock_holder_message(database: Database) -> str:
    with database.read() as connection:
        holder = connection.execute(
            sa.select(runs.c.id, runs.c.as_of, runs.c.started_at, runs.c.host, runs.c.pid)
            .where(runs.c.outcome == RunOutcome.RUNNING)
            .order_by(runs.c.id.desc())
            .limit(1)
        ).first()
    if holder is None:
        return "another run holds the run lock; try again when it has finished"
    return (
        f"run {holder.id} for {holder.as_of.isoformat()} is in progress (started "
        f"{holder.started_at.isoformat(timespec='seconds')} on {holder.host}, pid {holder.pid}); "
        "try again when it has finished"
    )
