"""``recycler send``: drain the outbox through the configured gateway."""

from __future__ import annotations

import asyncio
import json
import signal

import click
import structlog

from jobs.cli.app import App, configure, pass_app, write_metrics
from jobs.errors import ExitCode
from jobs.metrics import Metrics
from jobs.sending.dispatcher import Dispatcher, SendReport
from jobs.sending.gateways import build_gateway
from jobs.stopping import StopRequest

log = structlog.get_logger(__name__)


@click.command("send")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app
def send_command(app: App, once: bool, limit: int | None, as_json: bool) -> None:
    """Send queued warnings, inside sending hours, through the configured gateway.

    Without --once it keeps going, polling the outbox, until SIGTERM or SIGINT; then it lets the
    requests in flight finish, records them, releases what it claimed but did not send, and
    exits 0.

    \b
    Exit codes of --once:
      0  everything due was sent (or refused for good for its number), or nothing was due
      1  the gateway could not be used (credentials, configuration, connection): the
         warnings stay blocked, count as no notice, and the next send tries them again
      3  some warnings wait for a later attempt (the gateway failed them for now)
      4  another sender holds this SQLite database
    """
    configure(app)
    database = app.database()
    metrics = Metrics()
    dispatcher = Dispatcher(
        database, app.settings, build_gateway(app.settings), app.clock, metrics=metrics
    )
    dispatcher.check_clock()
    # In-flight requests are let finish and recorded; only a database that does not answer
    # then has its statements cancelled, and the process stops by force a little later.
    stop_timeout = app.settings.stop_timeout_seconds
    stopper = StopRequest(database, cancel_after=stop_timeout, give_up_after=stop_timeout + 5)
    try:
        report = asyncio.run(_send(dispatcher, once, limit, stopper))
    finally:
        stopper.finished()
        write_metrics(app, database, metrics)
    # The console gateway may be printing the messages themselves on standard output; the
    # summary then goes to standard error so that the messages stay one JSON line each.
    to_stderr = app.settings.gateway == "console" and app.settings.console_outbox_path is None
    if as_json:
        click.echo(json.dumps(report.to_json()), err=to_stderr)
    else:
        window = (
            f" (outside sending hours {app.settings.send_window})" if report.outside_window else ""
        )
        click.echo(
            f"sent {report.sent}, retry later {report.retried}, failed {report.failed}, "
            f"blocked {report.blocked}, cancelled as superseded {report.cancelled}, "
            f"released unsent {report.released}, delivery receipts applied {report.receipts}"
            f"{window}",
            err=to_stderr,
        )
    if report.gateway_problem is not None:
        click.echo(
            f"error: the gateway could not be used ({report.gateway_problem}); nothing more "
            "was sent, the warnings are kept and count as no notice until they go out",
            err=True,
        )
    if once:
        raise SystemExit(_exit_code(report))


def _exit_code(report: SendReport) -> int:
    if report.gateway_problem is not None:
        return ExitCode.FAILURE
    if report.retried or report.blocked:
        return ExitCode.PARTIAL
    return ExitCode.DONE


async def _send(
    dispatcher: Dispatcher, once: bool, limit: int | None, stopper: StopRequest
) -> SendReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(name: str) -> None:
        log.info("send.stopping", signal=name)
        stop.set()
        stopper(name)

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, request_stop, number.name)
    try:
        log.info("send.started", gateway=dispatcher.gateway.name, once=once)
        report = await dispatcher.run(once=once, limit=limit, stop=stop)
        log.info("send.finished", **report.to_json())
        return report
    finally:
        await dispatcher.gateway.close()
