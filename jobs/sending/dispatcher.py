"""The dispatcher: drains due warnings from the outbox through a gateway.

Each batch is claimed, re-checked (a warning whose cycle ended is cancelled, never sent), sent,
and its outcomes recorded; whatever is left claimed when a batch ends early is released for the
next sender. Passing gateway errors are retried later with exponential backoff and jitter up to
``max_attempts``; permanent ones fail the warning at once with the gateway's code.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs.clock import Clock, local_date
from jobs.database.engine import Database
from jobs.database.locks import LockBusy, sqlite_sender_lock
from jobs.errors import SenderInProgress
from jobs.failpoints import failpoint
from jobs.phone import mask
from jobs.sending import outbox
from jobs.settings import Settings
from notifier.encoding import Encoding
from notifier.gateway import Gateway, GatewayError
from notifier.message import Message

__all__ = ["Dispatcher", "SendReport", "retry_delay"]

log = structlog.get_logger(__name__)

_FIRST_RETRY = timedelta(seconds=30)
_LONGEST_RETRY = timedelta(hours=1)


@dataclass
class SendReport:
    """What one drain of the outbox did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    outside_window: bool = False

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "outside_window": self.outside_window,
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
    """Claims, re-checks, sends and records warnings in batches."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        gateway: Gateway,
        clock: Clock,
        *,
        batch_size: int = 200,
        rng: random.Random | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.gateway = gateway
        self.clock = clock
        self.batch_size = batch_size
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not a secret)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def in_window(self, moment: datetime | None = None) -> bool:
        """Whether the local time is inside the sending hours."""
        local = (moment or self.clock.now()).astimezone(self.settings.zone)
        return self.settings.window.contains(local.time())

    def drain(self, limit: int | None = None) -> SendReport:
        """Send what is due now, up to `limit` messages, then return."""
        report = SendReport()
        if not self.in_window():
            report.outside_window = True
            log.info("send.outside_window", window=self.settings.send_window)
            return report
        try:
            with sqlite_sender_lock(self.database):
                self._drain(report, limit)
        except LockBusy:
            raise SenderInProgress(
                "another sender is already draining this SQLite database; SQLite allows one "
                "sender at a time (use PostgreSQL for several)"
            ) from None
        return report

    def _drain(self, report: SendReport, limit: int | None) -> None:
        handled = 0
        while limit is None or handled < limit:
            if not self.in_window():
                report.outside_window = True
                break
            size = self.batch_size if limit is None else min(self.batch_size, limit - handled)
            count = self._batch(report, size)
            if count == 0:
                break
            handled += count

    def _batch(self, report: SendReport, size: int) -> int:
        token = f"{self.name}:{uuid.uuid4().hex[:12]}"
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        with self.database.write() as connection:
            claimed = outbox.claim(
                connection, token=token, now=now, lease_until=lease_until, limit=size
            )
            if not claimed:
                return 0
            cancelled = outbox.cancel_superseded(
                connection, token=token, now=now, actor=self._actor
            )
        report.cancelled += len(cancelled)
        sent: list[outbox.Delivery] = []
        retries: list[outbox.Delivery] = []
        failures: list[outbox.Delivery] = []
        try:
            for item in claimed:
                if item.warning_id in cancelled:
                    continue
                failpoint("send.before_request")
                self._send_one(item, sent, retries, failures)
        finally:
            self._record(token, sent, retries, failures, report)
        return len(claimed)

    def _send_one(
        self,
        item: outbox.Claimed,
        sent: list[outbox.Delivery],
        retries: list[outbox.Delivery],
        failures: list[outbox.Delivery],
    ) -> None:
        message = Message(
            to=item.msisdn,
            text=item.text,
            reference=f"warning-{item.warning_id}",
            encoding=Encoding(item.encoding),
            segments=item.segments,
        )
        try:
            gateway_id = self.gateway.send(message)
        except GatewayError as error:
            log.warning(
                "send.failed",
                warning_id=item.warning_id,
                to=mask(item.msisdn),
                code=error.code,
                retryable=error.retryable,
                attempt=item.attempts,
            )
            delivery = outbox.Delivery(
                item.warning_id, error_code=error.code[:32], error_message=str(error)[:500]
            )
            if error.retryable and item.attempts < self.settings.max_attempts:
                retries.append(
                    outbox.Delivery(
                        item.warning_id,
                        error_code=delivery.error_code,
                        error_message=delivery.error_message,
                        next_attempt_at=self.clock.now() + retry_delay(item.attempts, self.rng),
                    )
                )
            else:
                failures.append(delivery)
            return
        sent.append(outbox.Delivery(item.warning_id, gateway_message_id=gateway_id[:64]))

    def _record(
        self,
        token: str,
        sent: list[outbox.Delivery],
        retries: list[outbox.Delivery],
        failures: list[outbox.Delivery],
        report: SendReport,
    ) -> None:
        now = self.clock.now()
        today = local_date(now, self.settings.zone)
        with self.database.write() as connection:
            report.sent += outbox.record_sent(
                connection, token=token, deliveries=sent, now=now, today=today, actor=self._actor
            )
            outbox.record_retries(connection, token=token, deliveries=retries)
            report.retried += len(retries)
            report.failed += outbox.record_failures(
                connection,
                token=token,
                deliveries=failures,
                now=now,
                today=today,
                actor=self._actor,
            )
            # Whatever is still claimed was never tried (an interrupted batch): hand it back.
            outbox.release(connection, token=token)

    @property
    def _actor(self) -> str:
        return f"sender:{self.name}"
