"""Prometheus metrics: served by the daemon, or written to a textfile by one-shot commands.

The run and outbox figures are read from the database, so every process reports the same truth
whoever did the work; send latency and gateway errors are counted by the sender that saw them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    write_to_textfile,
)

from jobs.database.engine import Database
from jobs.nightly.records import run_history
from jobs.sending.outbox import depth
from jobs.sending.receipts import DELIVERY_OUTCOMES, deliveries_by_night
from jobs.vocabulary import Guard, RunOutcome, WarningState

__all__ = ["Metrics"]


class Metrics:
    """recycler's metrics in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.last_run_timestamp = Gauge(
            "recycler_last_run_timestamp_seconds",
            "When the newest real (not dry) nightly run finished, as a Unix time.",
            registry=self.registry,
        )
        self.last_run_as_of = Gauge(
            "recycler_last_run_as_of_timestamp_seconds",
            "The as-of date of the newest real nightly run, as a Unix time (midnight UTC).",
            registry=self.registry,
        )
        self.last_run_outcome = Gauge(
            "recycler_last_run_outcome",
            "1 for the outcome of the newest real nightly run, 0 for the others.",
            ["outcome"],
            registry=self.registry,
        )
        self.last_success_timestamp = Gauge(
            "recycler_last_successful_run_timestamp_seconds",
            "When the newest nightly run that succeeded (or withheld recycling) finished.",
            registry=self.registry,
        )
        self.last_run_numbers = Gauge(
            "recycler_last_run_numbers",
            "Numbers the newest real run recycled, deferred, withheld, found on hold.",
            ["kind"],
            registry=self.registry,
        )
        self.last_run_warnings = Gauge(
            "recycler_last_run_warnings_queued",
            "Warnings the newest real run queued, by stage (0: final notice).",
            ["stage"],
            registry=self.registry,
        )
        self.last_run_guards = Gauge(
            "recycler_last_run_guard_tripped",
            "1 when the guard withheld recycling in the newest real run.",
            ["guard"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "recycler_outbox_warnings",
            "Messages waiting in the outbox (pending, sending, blocked), and the newest night's "
            "warnings in each final state (sent, delivered, undelivered, failed, cancelled).",
            ["state"],
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "recycler_outbox_oldest_pending_seconds",
            "Age of the oldest pending warning (0 when none is pending).",
            registry=self.registry,
        )
        self.deliveries = Gauge(
            "recycler_deliveries",
            "The last 7 nights' warnings once the gateway had them, by night (its date), stage "
            "and outcome: delivered, undelivered, no_receipt (none within receipt_wait_hours), "
            "awaiting_receipt, failed (refused for the number).",
            ["night", "stage", "outcome"],
            registry=self.registry,
        )
        self.send_latency = Histogram(
            "recycler_send_latency_seconds",
            "How long one gateway request took, answered or not.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.gateway_errors = Counter(
            "recycler_gateway_errors_total",
            "Gateway refusals and failures, by the gateway's code.",
            ["code"],
            registry=self.registry,
        )
        self.messages = Counter(
            "recycler_messages_total",
            "Send attempts in this process by the state they left the warning in: sent, "
            "pending (to retry), failed (the number's fault), blocked (the operator's side).",
            ["outcome"],
            registry=self.registry,
        )
        self.gateway_unusable = Counter(
            "recycler_gateway_unusable_total",
            "Drains stopped because the gateway could not be used (credentials, configuration, "
            "connection): alert on any increase.",
            ["code"],
            registry=self.registry,
        )

    def observe_send(self, seconds: float, outcome: str, error_code: str | None) -> None:
        """One gateway request and the state it left the warning in."""
        self.send_latency.observe(seconds)
        self.messages.labels(outcome).inc()
        if error_code is not None:
            self.gateway_errors.labels(error_code).inc()

    def observe_gateway_unusable(self, code: str) -> None:
        """The gateway refused because of the operator's own side (a wrong token...)."""
        self.gateway_unusable.labels(code[:32]).inc()

    def refresh(
        self, database: Database, now: datetime, *, receipt_wait: timedelta = timedelta(hours=72)
    ) -> None:
        """Read the run, outbox and delivery figures from the database."""
        with database.read() as connection:
            history = run_history(connection)
            outbox = depth(connection)
            deliveries = deliveries_by_night(connection, now=now, wait=receipt_wait)
        # Nights come and go: only the last seven are series at any time.
        self.deliveries.clear()
        for row in deliveries:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(row.night.isoformat(), str(row.stage), outcome).set(
                    getattr(row, outcome)
                )
        for state in WarningState:
            self.outbox.labels(state).set(outbox.by_state.get(state, 0))
        oldest = outbox.oldest_pending
        self.oldest_pending.set((now - oldest).total_seconds() if oldest else 0)
        last, last_success = history.last, history.last_completed_at
        if last_success is not None:
            self.last_success_timestamp.set(last_success.timestamp())
        if last is None:
            return
        if last.finished_at is not None:
            self.last_run_timestamp.set(last.finished_at.timestamp())
        as_of = last.as_of
        self.last_run_as_of.set(
            datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp()
        )
        for outcome in RunOutcome:
            self.last_run_outcome.labels(outcome).set(1 if last.outcome == outcome else 0)
        for kind in ("recycled", "deferred", "withheld", "on_hold"):
            self.last_run_numbers.labels(kind).set(getattr(last, kind) or 0)
        for stage, count in (last.warnings_queued or {}).items():
            self.last_run_warnings.labels(str(stage)).set(count)
        for guard in Guard:
            self.last_run_guards.labels(guard).set(1 if guard in (last.guards or []) else 0)

    def serve(self, port: int) -> None:
        """Serve /metrics on the port, from a background thread."""
        start_http_server(port, addr="0.0.0.0", registry=self.registry)  # noqa: S104

    def write(self, path: Path) -> None:
        """Write the textfile node_exporter collects (atomically: temporary file, rename)."""
        write_to_textfile(str(path), self.registry)
