"""``recycler send``: drain the outbox through the configured gateway."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType

import click

from jobs.cli.app import App, configure, pass_app
from jobs.sending.dispatcher import Dispatcher, SendReport
from jobs.sending.gateways import build_gateway

_POLL_SECONDS = 5.0


@click.command("send")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app
def send_command(app: App, once: bool, limit: int | None, as_json: bool) -> None:
    """Send queued warnings, inside sending hours, through the configured gateway.

    Without --once it keeps polling the outbox until SIGTERM or SIGINT, then finishes the
    batch in hand and exits 0.
    """
    configure(app)
    gateway = build_gateway(app.settings)
    dispatcher = Dispatcher(app.database(), app.settings, gateway, app.clock)
    total = SendReport()
    stop = threading.Event()
    if not once:

        def request_stop(_signal: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    try:
        while True:
            remaining = None if limit is None else limit - total.sent - total.failed
            report = dispatcher.drain(remaining)
            for name in ("sent", "retried", "failed", "cancelled"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.outside_window = report.outside_window
            if once or stop.is_set() or (remaining is not None and remaining <= 0):
                break
            stop.wait(_POLL_SECONDS)
            if stop.is_set():
                break
    finally:
        gateway.close()
    # The console gateway may be printing the messages themselves on standard output; the
    # summary then goes to standard error so that the messages stay one JSON line each.
    to_stderr = app.settings.gateway == "console" and app.settings.console_outbox_path is None
    if as_json:
        click.echo(json.dumps(total.to_json()), err=to_stderr)
    else:
        window = (
            f" (outside sending hours {app.settings.send_window})" if (total.outside_window) else ""
        )
        click.echo(
            f"sent {total.sent}, retry later {total.retried}, failed {total.failed}, "
            f"cancelled as superseded {total.cancelled}{window}",
            err=to_stderr,
        )
