"""The program's first lines: what a stop signal means is settled before anything else loads.

Loading the command line takes a moment (SQLAlchemy, Alembic, the twilio client), and a SIGTERM in
that moment used to kill the process with the default action (exit status -15). Here SIGTERM
means what SIGINT means from the first instant: stop, keep nothing unfinished, exit with a
documented code. The commands that run for long (``run``, ``send``, ``daemon``) put their own
graceful handlers in place; the rest stop at once, rolling back what they had not committed.
Once a command has finished, late signals are ignored so that its exit code stands.
"""

from __future__ import annotations

import signal
import sys

__all__ = ["main"]


def _stopped_while_starting(_number: int, _frame: object) -> None:
    print("stopped before it started: nothing was done", file=sys.stderr)
    raise SystemExit(0)


def main() -> None:
    """Entry point of the ``recycler`` console script and of ``python -m jobs``."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stopped_while_starting)
    from jobs.cli import cli  # noqa: PLC0415  (after the handlers, deliberately)

    # From here on a stop signal interrupts the command like Ctrl-C, and the command line turns
    # that into one sentence and one exit code.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cli(prog_name="recycler")
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_IGN)
