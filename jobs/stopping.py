"""What a stop signal sets in motion for the long-running commands (run, send, daemon).

SIGTERM first asks the work to stop at its next safe point (an event it checks between steps).
If that point does not come because the database does not answer, the statements in flight are
cancelled (psycopg's cancel request, SQLite's interrupt), which makes the waiting call raise and
its transaction roll back. If even that does not end the process (a server that is frozen takes
no cancel request either), the process leaves by force once ``stop_timeout_seconds`` have
passed: whatever it had not committed the server rolls back when the connection goes, and the
next run or sender redoes it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import structlog

from jobs.database.engine import Database
from jobs.errors import ExitCode

__all__ = ["StopRequest"]

log = structlog.get_logger(__name__)


class StopRequest:
    """A stop asked for by a signal: an event for the work, and a watchdog for the database."""

    def __init__(self, database: Database, *, cancel_after: float, give_up_after: float) -> None:
        """``cancel_after``: seconds from the signal to cancelling the statements in flight
        (0 for a run, which keeps nothing anyway); ``give_up_after``: seconds to the forced
        exit."""
        self.database = database
        self.cancel_after = cancel_after
        self.give_up_after = max(give_up_after, cancel_after)
        self.event = threading.Event()
        self._finished = threading.Event()

    def __call__(self, signal_name: str) -> None:
        """Safe to call from a signal handler or an event loop: it only sets flags and starts
        the watchdog thread (once)."""
        if self.event.is_set():
            return
        self.event.set()
        threading.Thread(
            target=self._watch, args=(signal_name,), name="stop-watchdog", daemon=True
        ).start()

    def finished(self) -> None:
        """The work has stopped by itself: the watchdog has nothing more to do."""
        self._finished.set()

    def _watch(self, signal_name: str) -> None:
        began = time.monotonic()
        if self._finished.wait(self.cancel_after):
            return
        asked = self.database.cancel_statements()
        if asked:
            log.warning("stop.cancelled_statements", signal=signal_name, connections=asked)
        remaining = self.give_up_after - (time.monotonic() - began)
        if self._finished.wait(max(remaining, 0)):
            return
        log.error(
            "stop.forced",
            signal=signal_name,
            seconds=self.give_up_after,
            reason="the database did not answer; the server rolls back what was not committed",
        )
        sys.stderr.flush()
        os._exit(ExitCode.FAILURE)
