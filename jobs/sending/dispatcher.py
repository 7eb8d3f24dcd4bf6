"""The dispatcher: drains due warnings from the outbox through a gateway.

One claimer fetches batches (claim and re-check in one transaction: a warning whose cycle ended is
cancelled, never sent), ``send_concurrency`` workers send at no more than ``send_rate`` messages a
second, and results are recorded in batches. Passing gateway errors are retried later with
exponential backoff and jitter, up to ``max_attempts``; permanent ones fail at once with the
gateway's code. Stopping (SIGTERM, SIGINT, the end of sending hours) lets the requests in flight
finish, records them, and releases what was claimed but not sent, for the next sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog
from aiolimiter import AsyncLimiter
from sqlalchemy.engine import Connection

from jobs.clock import Clock, local_date
from jobs.database.engine import BaseLock, Database
from jobs.database.locks import LockBusy, sqlite_sender_lock
from jobs.errors import RecyclerError, SenderInProgress
from jobs.failpoints import failpoint
from jobs.sending import outbox, receipts
from jobs.settings import Settings
from jobs.vocabulary import WarningState
from notifier.encoding import Encoding
from notifier.gateway import (
    Gateway,
    GatewayError,
    OperatorGatewayError,
    RecipientGatewayError,
)
from notifier.message import Message

__all__ = ["ClockSkew", "Dispatcher", "SendReport", "retry_delay"]

log = structlog.get_logger(__name__)

_FIRST_RETRY = timedelta(seconds=30)
_LONGEST_RETRY = timedelta(hours=1)
_LARGEST_BATCH = 500
_Result = TypeVar("_Result")


class SendObserver(Protocol):
    """What the dispatcher reports as it sends (jobs.metrics.Metrics counts it): declared
    here so that sending does not depend on the module that reads every service's figures."""

    def observe_send(self, seconds: float, outcome: str, error_code: str | None) -> None: ...

    def observe_gateway_unusable(self, code: str) -> None: ...


class ClockSkew(RecyclerError):
    """This machine's clock is too far from the database's to send."""


@dataclass
class SendReport:
    """What one drain of the outbox did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    blocked: int = 0
    cancelled: int = 0
    released: int = 0
    # Warnings a delivery receipt moved to delivered or undelivered.
    receipts: int = 0
    outside_window: bool = False
    database_seconds: float = 0.0
    # Why the gateway could not be used, when a failure on the operator's side stopped the drain.
    gateway_problem: str | None = None

    def add(self, other: SendReport) -> None:
        """Count another drain's figures into this one."""
        for name in ("sent", "retried", "failed", "blocked", "cancelled", "released", "receipts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.database_seconds += other.database_seconds
        self.outside_window = self.outside_window or other.outside_window
        self.gateway_problem = other.gateway_problem or self.gateway_problem

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "blocked": self.blocked,
            "cancelled": self.cancelled,
            "released": self.released,
            "receipts": self.receipts,
            "outside_window": self.outside_window,
            "gateway_problem": self.gateway_problem,
            "database_seconds": round(self.database_seconds, 3),
        }


def retry_delay(attempts: int, rng: random.Random) -> timedelta:
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min, … capped at one hour.

    The jitter (half to one and a half times) keeps senders that failed together from retrying
    together against a gateway that is just recovering.
    """
    doublings = min(max(attempts - 1, 0), 16)
    exponential = min(_FIRST_RETRY * (1 << doublings), _LONGEST_RETRY)
    return exponential * rng.uniform(0.5, 1.5)


class Dispatcher:
    """Claims, re-checks, sends and records warnings."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        gateway: Gateway,
        clock: Clock,
        *,
        batch_size: int | None = None,
        poll_seconds: float = 5.0,
        rng: random.Random | None = None,
        metrics: SendObserver | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.gateway = gateway
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.metrics = metrics
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not a secret)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        # Claim a few rounds of work at a time, never more than can be sent well inside the
        # lease: a sender should not sit on work another sender could be doing, nor lose its
        # claims to one.
        size = batch_size or min(_LARGEST_BATCH, max(settings.send_concurrency * 4, 20))
        if settings.send_rate > 0:
            size = min(size, max(1, int(settings.send_rate * settings.lease_seconds / 4)))
        self.batch_size = size

    @property
    def actor(self) -> str:
        """How the sender signs its audit events."""
        return f"sender:{self.name}"

    def sending(self) -> AbstractContextManager[Connection]:
        """A sender's transaction: the base lock shared with other senders, waiting as long as
        a nightly run or an import may hold it exclusively."""
        return self.database.write(
            lock=BaseLock.SHARED, statement_seconds=self.settings.run_statement_timeout_seconds
        )

    def check_clock(self) -> None:
        """Refuse to send from a machine whose clock is far from the database's: the sending
        hours and every log line would be off, and leases are read by the database's clock."""
        with self.database.read() as connection:
            skew = (self.clock.now() - self.clock.now_in(connection)).total_seconds()
        if abs(skew) > self.settings.max_clock_skew_seconds:
            log.warning("send.clock_skew", seconds=round(skew, 1))
            raise ClockSkew(
                f"this machine's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'}"
                f" the database's (at most {self.settings.max_clock_skew_seconds:g} s allowed): "
                "fix its time (NTP) before sending"
            )

    def in_window(self, moment: datetime | None = None) -> bool:
        """Whether the local time is inside the sending hours."""
        local = (moment or self.clock.now()).astimezone(self.settings.zone)
        return self.settings.window.contains(local.time())

    def drain(self, limit: int | None = None) -> SendReport:
        """Send what is due now (at most `limit` messages), then return: ``send --once``."""
        return asyncio.run(self.run(once=True, limit=limit))

    async def run(
        self, *, once: bool, limit: int | None = None, stop: asyncio.Event | None = None
    ) -> SendReport:
        """Send until nothing is due (``once``) or until `stop` is set.

        A failure on the operator's side ends the drain at once (``gateway_problem`` says
        why). With ``once`` that is the end; otherwise the sender waits a poll interval and
        tries again, so that a gateway put right is used without a restart.
        """
        stopping = stop or asyncio.Event()
        total = SendReport()
        try:
            with sqlite_sender_lock(self.database):
                while True:
                    total.add(await _Drain(self, once, limit, stopping).run())
                    if once or stopping.is_set():
                        return total
                    await _wait(stopping, self.poll_seconds)
        except LockBusy:
            raise SenderInProgress(
                "another sender is already draining this SQLite database; SQLite allows one "
                "sender at a time (use PostgreSQL for several)"
            ) from None


async def _wait(event: asyncio.Event, seconds: float | None) -> None:
    """Until the event is set, or at most `seconds`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


class _Drain:
    """One drain: a claimer, the workers, and a recorder, sharing a queue of claimed warnings."""

    def __init__(
        self, dispatcher: Dispatcher, once: bool, limit: int | None, stop: asyncio.Event
    ) -> None:
        self.dispatcher = dispatcher
        self.settings = dispatcher.settings
        self.once = once
        self.limit = limit
        self.stop = stop
        self.report = SendReport()
        self.queue: asyncio.Queue[outbox.Claimed | None] = asyncio.Queue()
        self.hungry = asyncio.Event()
        # Every claim token of this drain starts with this.
        self.drain = f"{dispatcher.name}:{uuid.uuid4().hex[:12]}:"
        self.tokens: list[str] = []
        self.token_of: dict[int, str] = {}
        self.results: list[tuple[outbox.Delivery, asyncio.Future[None]]] = []
        self.results_waiting = asyncio.Event()
        self.closing = False
        self.failure: Exception | None = None
        # Set by the first failure on the operator's side: nothing more is claimed or sent.
        self.halted = asyncio.Event()
        self.claimed = 0
        rate = self.settings.send_rate
        # A bucket of one: messages leave evenly spaced, never in bursts above the rate.
        self.limiter = AsyncLimiter(1, 1 / rate) if rate > 0 else None

    async def run(self) -> SendReport:
        workers = [
            asyncio.create_task(self._worker()) for _ in range(self.settings.send_concurrency)
        ]
        recorder = asyncio.create_task(self._recorder())
        try:
            await self._claimer()
        finally:
            for _ in workers:
                self.queue.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
            # The recorder finishes its last batch itself: a recording still running in its
            # thread must commit before anything is released, or a sent warning would be
            # handed to the next sender as unsent.
            self.closing = True
            self.results_waiting.set()
            await recorder
            self.report.released = await self._database(self._release)
        if self.failure is not None:
            raise self.failure
        return self.report

    async def _database(self, work: Callable[[], _Result]) -> _Result:
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(work)
        finally:
            self.report.database_seconds += time.perf_counter() - started

    # Claiming ------------------------------------------------------------------------------

    async def _claimer(self) -> None:
        concurrency = self.settings.send_concurrency
        while not self.stop.is_set() and not self.halted.is_set():
            if self.limit is not None and self.claimed >= self.limit:
                return
            if not self.dispatcher.in_window():
                self.report.outside_window = True
                if self.once:
                    log.info("send.outside_window", window=self.settings.send_window)
                    return
                await self._pause(self.dispatcher.poll_seconds)
                continue
            if self.queue.qsize() >= concurrency:
                self.hungry.clear()
                await self._wait_for(self.hungry, None)
                continue
            size = self.dispatcher.batch_size
            if self.limit is not None:
                size = min(size, self.limit - self.claimed)
            claimed, fresh = await self._database(functools.partial(self._claim, size))
            if not claimed:
                if self.once:
                    return
                await self._pause(self.dispatcher.poll_seconds)
                continue
            # Superseded warnings count against --limit too: they were handled, by cancelling.
            self.claimed += claimed
            for item in fresh:
                self.queue.put_nowait(item)

    def _claim(self, size: int) -> tuple[int, list[outbox.Claimed]]:
        """Claim a batch; returns how many were claimed and those still worth sending."""
        token = f"{self.drain}{len(self.tokens)}"
        with self.dispatcher.sending() as connection:
            # Leases are the database's time, so a sender whose clock runs ahead cannot take
            # another's claims early.
            now = self.dispatcher.clock.now_in(connection)
            lease_until = now + timedelta(seconds=self.settings.lease_seconds)
            # The receipts the API kept since the last round (a batch at most: the claim's
            # transaction stays short; an idle round applies the rest).
            moved, following = receipts.apply_receipts(
                connection, now=now, actor=self.dispatcher.actor
            )
            self.report.receipts += moved
            claimed = outbox.claim(
                connection,
                token=token,
                now=now,
                lease_until=lease_until,
                limit=size,
                drain=self.drain,
            )
            cancelled = (
                outbox.cancel_superseded(
                    connection, token=token, now=now, actor=self.dispatcher.actor
                )
                if claimed
                else set()
            )
        if not claimed:
            # Nothing to send: the time to work off a backlog of receipts, if there is one.
            if following is not None:
                self.report.receipts += self._apply_receipts(after=following)
            return 0, []
        self.tokens.append(token)
        self.report.cancelled += len(cancelled)
        fresh = [item for item in claimed if item.warning_id not in cancelled]
        for item in fresh:
            self.token_of[item.warning_id] = token
        return len(claimed), fresh

    async def _pause(self, seconds: float) -> None:
        await self._wait_for(self.stop, seconds)

    async def _wait_for(self, event: asyncio.Event, seconds: float | None) -> None:
        waiting = asyncio.create_task(event.wait())
        stopping = asyncio.create_task(self.stop.wait())
        await asyncio.wait({waiting, stopping}, timeout=seconds, return_when="FIRST_COMPLETED")
        waiting.cancel()
        stopping.cancel()

    # Sending ---------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            if self.queue.qsize() < self.settings.send_concurrency:
                self.hungry.set()
            item = await self.queue.get()
            if item is None:
                return
            if self._ending():
                continue  # not sent: released at the end, for another sender
            if self.limiter is not None:
                await self.limiter.acquire()
                if self._ending():
                    continue
            failpoint("send.before_request")
            delivery = await self._send(item)
            # A worker takes no new message until this outcome is on disk, so a sender that
            # dies can only send again the send_concurrency messages it had in flight.
            written = asyncio.get_running_loop().create_future()
            self.results.append((delivery, written))
            self.results_waiting.set()
            await written

    def _ending(self) -> bool:
        return self.stop.is_set() or self.halted.is_set()

    async def _send(self, item: outbox.Claimed) -> outbox.Delivery:
        token = self.token_of[item.warning_id]
        message = Message(
            to=item.msisdn,
            text=item.text,
            reference=f"warning-{item.warning_id}",
            encoding=Encoding(item.encoding),
            segments=item.segments,
        )
        started = time.perf_counter()
        try:
            gateway_id = await self.dispatcher.gateway.send(message)
        except GatewayError as error:
            delivery = self._after_refusal(item, token, error)
        except Exception as unexpected:
            # An adapter that breaks its contract cannot be trusted with the next message
            # either: the fault is on the operator's side, in the log with its traceback.
            log.exception("send.unexpected_error", warning_id=item.warning_id)
            problem = OperatorGatewayError(
                "unexpected", f"{type(unexpected).__name__}: {unexpected}"
            )
            delivery = self._after_refusal(item, token, problem)
        else:
            delivery = outbox.Delivery(
                item.warning_id, token, WarningState.SENT, gateway_message_id=gateway_id[:64]
            )
        if self.dispatcher.metrics is not None:
            self.dispatcher.metrics.observe_send(
                time.perf_counter() - started, delivery.state, delivery.error_code
            )
        return delivery

    def _after_refusal(
        self, item: outbox.Claimed, token: str, error: GatewayError
    ) -> outbox.Delivery:
        """What a gateway's refusal makes of the warning."""
        code, detail = error.code[:32], str(error)[:500]
        if isinstance(error, RecipientGatewayError):
            log.warning("send.failed", warning_id=item.warning_id, to=item.msisdn, code=code)
            return outbox.Delivery(
                item.warning_id, token, WarningState.FAILED, error_code=code, error_message=detail
            )
        if isinstance(error, OperatorGatewayError):
            self._halt(error)
            return outbox.Delivery(
                item.warning_id,
                token,
                WarningState.BLOCKED,
                error_code=code,
                error_message=detail,
                retry_in=timedelta(0),
                attempt_counts=False,
            )
        later = retry_delay(item.attempts, self.dispatcher.rng)
        if item.attempts < self.settings.max_attempts:
            log.warning(
                "send.retry_later",
                warning_id=item.warning_id,
                to=item.msisdn,
                code=code,
                attempt=item.attempts,
            )
            return outbox.Delivery(
                item.warning_id,
                token,
                WarningState.PENDING,
                error_code=code,
                error_message=detail,
                retry_in=later,
            )
        # The gateway keeps failing this message: not the subscriber's doing, so it is no notice.
        # It waits, blocked, and is tried again about hourly until the gateway takes it.
        log.error(
            "send.attempts_exhausted",
            warning_id=item.warning_id,
            to=item.msisdn,
            code=code,
            attempts=item.attempts,
        )
        return outbox.Delivery(
            item.warning_id,
            token,
            WarningState.BLOCKED,
            error_code=code,
            error_message=detail,
            retry_in=later,
        )

    def _halt(self, error: GatewayError) -> None:
        """The first failure on the operator's side stops the drain, with one clear event."""
        if self.halted.is_set():
            return
        self.halted.set()
        self.hungry.set()
        self.report.gateway_problem = str(error)
        log.error(
            "send.gateway_unusable",
            gateway=self.dispatcher.gateway.name,
            code=error.code,
            detail=error.detail,
            hint="fix the gateway settings or credentials; the warnings are kept, blocked, and "
            "the next send tries them again",
        )
        if self.dispatcher.metrics is not None:
            self.dispatcher.metrics.observe_gateway_unusable(error.code)

    # Recording -------------------------------------------------------------------------------

    async def _recorder(self) -> None:
        """Record results as soon as there are any, as one batch per transaction.

        Like a group commit: while one batch is being written the next one gathers, so batches
        grow with the sending rate and the database is never asked once per message, yet a
        result waits at most one write before it is on disk. A sender that dies can only send
        again what it had in flight or waiting for that one write.
        """
        while True:
            await self.results_waiting.wait()
            self.results_waiting.clear()
            if self.results:
                batch, self.results = self.results, []
                deliveries = [delivery for delivery, _ in batch]
                try:
                    await self._database(functools.partial(self._record, deliveries))
                except Exception as error:
                    # The database is failing: stop sending (what is not recorded will be sent
                    # again), release the workers, and report the error when the session ends.
                    log.error("send.record_failed", error=str(error))
                    self.failure = self.failure or error
                    self.stop.set()
                for _, written in batch:
                    written.set_result(None)
            if self.closing and not self.results:
                return

    def _record(self, batch: list[outbox.Delivery]) -> None:
        with self.dispatcher.sending() as connection:
            now = self.dispatcher.clock.now_in(connection)
            recorded = outbox.record_outcomes(
                connection,
                deliveries=batch,
                now=now,
                today=local_date(now, self.settings.zone),
                actor=self.dispatcher.actor,
            )
        self.report.sent += recorded.get(WarningState.SENT, 0)
        self.report.failed += recorded.get(WarningState.FAILED, 0)
        self.report.blocked += recorded.get(WarningState.BLOCKED, 0)
        self.report.retried += recorded.get(WarningState.PENDING, 0)

    def _apply_receipts(self, after: int = 0) -> int:
        """Apply every waiting receipt after `after`, a batch per transaction, each batch
        starting where the last one ended; returns the warnings moved."""
        total: int = 0
        following: int | None = after
        while following is not None:
            with self.dispatcher.sending() as connection:
                now = self.dispatcher.clock.now_in(connection)
                moved, following = receipts.apply_receipts(
                    connection, now=now, actor=self.dispatcher.actor, after=following
                )
            total += moved
        return total

    def _release(self) -> int:
        # The receipts of what this drain sent that came in while it sent.
        self.report.receipts += self._apply_receipts()
        with self.dispatcher.sending() as connection:
            return outbox.release(connection, tokens=self.tokens)
