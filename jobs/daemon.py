"""``recycler daemon``: the nightly run on a cron schedule, and the sender, under APScheduler 3.

Safety does not rest on the scheduler: its job store is in memory and private to this process
(APScheduler's documentation says stores must not be shared), and what keeps two daemons from
running one night twice is the run lock plus the run records, which both live in the database.
On start the daemon reads those records: if no run has succeeded since the schedule last fired,
it runs now, once, as a catch-up (the rules are state-based, so one run for today covers every
missed night).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from datetime import date, timedelta
from types import FrameType

import sqlalchemy as sa
import structlog
from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from jobs.clock import Clock, local_date
from jobs.database.engine import Database
from jobs.database.schema import runs
from jobs.errors import AlreadyRan, InputRefused, RunInProgress, RunInterrupted
from jobs.metrics import Metrics
from jobs.nightly import RunOptions, run_nightly
from jobs.nightly.records import COMPLETED
from jobs.sending.dispatcher import ClockSkew, Dispatcher
from jobs.sending.gateways import build_gateway
from jobs.settings import Settings, cron_trigger, latest_fire_time
from jobs.stopping import StopRequest
from notifier.templates import TemplateBook

__all__ = ["Daemon"]

log = structlog.get_logger(__name__)

# A scheduled run that starts late (the machine was asleep, the previous run overran) still runs
# if it is less than this late; a daemon that was down at the time catches up on start instead.
_MISFIRE_GRACE = timedelta(hours=20)
# How long a scheduled run waits for another daemon's run of the same night before checking
# whether that run already did the work.
_LOCK_WAIT_SECONDS = 3600.0
# A failed run is tried again after run_retry_seconds, doubling each time up to this.
_LONGEST_RETRY = timedelta(minutes=15)


class Daemon:
    """The long-running service."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        templates: TemplateBook,
        clock: Clock,
        *,
        actor: str,
    ) -> None:
        self.database = database
        self.settings = settings
        self.templates = templates
        self.clock = clock
        self._receipt_wait = timedelta(hours=settings.receipt_wait_hours)
        self.actor = actor
        # SIGTERM stops the jobs at their next safe point; a database that does not answer has
        # its statements cancelled after stop_timeout_seconds, and the process leaves by force
        # a little later (jobs/stopping.py).
        self.stopper = StopRequest(
            database,
            cancel_after=settings.stop_timeout_seconds,
            give_up_after=settings.stop_timeout_seconds + 5,
        )
        self.stopping = self.stopper.event
        self._busy = 0
        self._idle = threading.Condition()
        self.metrics = Metrics()
        self.scheduler = BlockingScheduler(
            timezone=settings.zone,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(_MISFIRE_GRACE.total_seconds()),
            },
        )

    def needs_catch_up(self) -> bool:
        """Whether no run has succeeded since the schedule last fired."""
        now = self.clock.now()
        fired = latest_fire_time(self.settings.run_schedule, self.settings.zone, now)
        if fired is None:
            return False
        with self.database.read() as connection:
            newest = connection.execute(
                sa.select(sa.func.max(runs.c.started_at)).where(COMPLETED)
            ).scalar()
        return newest is None or newest < fired

    def run(self) -> None:
        """Schedule the jobs, catch up if a night was missed, and block until stopped."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_signal)
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.metrics_port)
        self.metrics.refresh(self.database, self.clock.now(), receipt_wait=self._receipt_wait)
        self.scheduler.add_job(
            self.nightly,
            cron_trigger(self.settings.run_schedule, self.settings.zone),
            id="nightly",
            name="nightly run",
        )
        self.scheduler.add_job(
            self.send,
            IntervalTrigger(seconds=self.settings.send_poll_seconds, timezone=self.settings.zone),
            id="send",
            name="sender",
            next_run_time=self.clock.now(),
        )
        if self.needs_catch_up():
            log.info("daemon.catch_up", reason="no successful run since the schedule last fired")
            self.scheduler.add_job(
                self.nightly,
                id="catch-up",
                name="catch-up run",
                kwargs={"catch_up": True},
                next_run_time=self.clock.now(),
            )
        self.scheduler.add_listener(self._on_job_error, EVENT_JOB_ERROR)
        log.info(
            "daemon.started",
            run_schedule=self.settings.run_schedule,
            timezone=self.settings.timezone,
            send_window=self.settings.send_window,
            metrics_port=self.settings.metrics_port,
        )
        self.scheduler.start()
        # The scheduler returns at once when stopped; the jobs still running end at their next
        # safe point (the run rolls back and records itself interrupted, the sender releases its
        # claims), and the process must not leave before they have.
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)
        self.stopper.finished()
        log.info("daemon.stopped")

    def _job_started(self) -> bool:
        with self._idle:
            if self.stopping.is_set():
                return False
            self._busy += 1
            return True

    def _job_finished(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def nightly(self, catch_up: bool = False, as_of: date | None = None, attempt: int = 1) -> None:
        """The nightly run for its date (today when scheduled), unless a run for that date
        already completed; a run that failed or could not start is tried again, with backoff,
        until it completes."""
        if not self._job_started():
            return
        day = as_of or local_date(self.clock.now(), self.settings.zone)
        try:
            failure = self._nightly(catch_up, day)
            if failure is not None and not self.stopping.is_set():
                self._retry_later(day, attempt, failure)
        finally:
            self._job_finished()

    def _nightly(self, catch_up: bool, day: date) -> str | None:
        """Run the night; return why it failed when trying again may help."""
        options = RunOptions(
            as_of=day,
            catch_up=catch_up,
            actor=f"daemon:{self.actor}",
            lock_wait_seconds=_LOCK_WAIT_SECONDS,
            stop=self.stopping,
            once_per_date=True,
        )
        try:
            run_nightly(self.database, self.settings, self.templates, self.clock, options)
        except AlreadyRan as skipped:
            log.info("run.skipped", reason=str(skipped))
        except RunInterrupted:
            pass  # recorded as interrupted by the run itself; the next start catches up
        except RunInProgress as busy:
            log.warning("run.skipped", reason=str(busy))
        except InputRefused as refused:
            log.error("run.refused", error=refused.message)
        except Exception as error:  # the database away, a statement cancelled, a bug
            return str(error).splitlines()[0] if str(error) else type(error).__name__
        finally:
            with contextlib.suppress(Exception):  # metrics wait for the database like the run
                self.metrics.refresh(
                    self.database, self.clock.now(), receipt_wait=self._receipt_wait
                )
        return None

    def _retry_later(self, day: date, attempt: int, failure: str) -> None:
        delay = min(
            self.settings.run_retry_seconds * 2 ** (attempt - 1), _LONGEST_RETRY.total_seconds()
        )
        log.error(
            "run.retry_scheduled",
            as_of=day.isoformat(),
            attempt=attempt,
            retry_in_seconds=delay,
            error=failure,
        )
        self.scheduler.add_job(
            self.nightly,
            "date",
            run_date=self.clock.now() + timedelta(seconds=delay),
            id="nightly-retry",
            name=f"retry of the run for {day.isoformat()}",
            replace_existing=True,
            kwargs={"as_of": day, "attempt": attempt + 1},
        )

    def send(self) -> None:
        """Drain what is due now, inside sending hours; the scheduler calls it every poll."""
        if not self._job_started():
            return
        try:
            self._send_due()
        finally:
            self._job_finished()

    def _send_due(self) -> None:
        dispatcher = Dispatcher(
            self.database,
            self.settings,
            build_gateway(self.settings),
            self.clock,
            metrics=self.metrics,
        )
        try:
            if dispatcher.in_window():
                dispatcher.check_clock()
                asyncio.run(self._send(dispatcher))
        except ClockSkew as skewed:
            log.error("send.refused", error=skewed.message)
        finally:
            with contextlib.suppress(Exception):  # metrics wait for the database like the rest
                self.metrics.refresh(
                    self.database, self.clock.now(), receipt_wait=self._receipt_wait
                )

    async def _send(self, dispatcher: Dispatcher) -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            # The signal arrives in the main thread; the sender runs in a scheduler thread.
            while not self.stopping.is_set():
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            await dispatcher.run(once=True, stop=stop)
        finally:
            watcher.cancel()
            await dispatcher.gateway.close()

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        log.info("daemon.stopping", signal=name)
        self.stopper(name)
        # Jobs in progress see `stopping`, end at their next safe point, and are waited for.
        self.scheduler.shutdown(wait=False)

    def _on_job_error(self, event: JobExecutionEvent) -> None:
        log.error("daemon.job_failed", job=event.job_id, error=repr(event.exception))

    def __repr__(self) -> str:
        return f"Daemon(schedule={self.settings.run_schedule!r})"
