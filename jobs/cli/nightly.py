"""``recycler run``: the nightly run for one date."""

from __future__ import annotations

import signal
from datetime import date

import click
from rich.table import Table

from jobs.cli.app import DATE, App, configure, emit_json, pass_app, write_metrics
from jobs.errors import ExitCode, RunInterrupted
from jobs.nightly import RunOptions, RunReport, run_nightly
from jobs.rules import FINAL_NOTICE_STAGE
from jobs.stopping import StopRequest


@click.command("run")
@click.option(
    "--date",
    "as_of",
    type=DATE,
    help="The as-of date D (YYYY-MM-DD); default today in the operator's time zone.",
)
@click.option("--dry-run", is_flag=True, help="Do all the work, keep none of it; may look ahead.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.option(
    "--allow-mass-recycle",
    is_flag=True,
    help="Recycle even when more than max_recycle_fraction of the base would go.",
)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for another run to finish before giving up (exit 4).",
)
@pass_app
def run_command(
    app: App,
    as_of: date | None,
    dry_run: bool,
    as_json: bool,
    allow_mass_recycle: bool,
    wait_seconds: float,
) -> None:
    """Run the nightly job for one date: queue warnings, recycle numbers past grace end.

    Exit codes: 0 done (or stopped by SIGTERM/SIGINT, keeping nothing); 3 recycling withheld by a
    guard (warnings still queued); 2 refused input (a date after today); 4 another run in
    progress; 1 failure.
    """
    configure(app)
    database = app.database()
    # A run keeps nothing unfinished: its statement in flight is cancelled at once.
    stopper = StopRequest(database, cancel_after=0, give_up_after=app.settings.stop_timeout_seconds)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda number, _frame: stopper(signal.Signals(number).name))
    try:
        report = run_nightly(
            database,
            app.settings,
            app.templates,
            app.clock,
            RunOptions(
                as_of=as_of,
                dry_run=dry_run,
                allow_mass_recycle=allow_mass_recycle,
                actor=app.actor,
                lock_wait_seconds=wait_seconds,
                stop=stopper.event,
            ),
        )
    except RunInterrupted as interrupted:
        # Asked to stop (systemctl stop, Ctrl-C): a clean stop, not a failure.
        click.echo(f"interrupted: {interrupted.message}; run it again to do the work", err=True)
        raise SystemExit(ExitCode.DONE) from None
    finally:
        stopper.finished()
        write_metrics(app, database)
    if as_json:
        emit_json(report.to_json())
    else:
        _print(app, report)
    for message in report.messages:
        click.echo(f"warning: {message}", err=True)
    raise SystemExit(ExitCode.PARTIAL if report.guards else ExitCode.DONE)


def _stage_name(stage: int) -> str:
    if stage == FINAL_NOTICE_STAGE:
        return "final notice"
    return f"{stage} day{'' if stage == 1 else 's'} before grace end"


def _print(app: App, report: RunReport) -> None:
    title = (
        f"Run {report.run_id} for {report.as_of.isoformat()}"
        f"{' (dry run: nothing kept)' if report.dry_run else ''}: {report.outcome}"
    )
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for stage in sorted(report.warnings_queued, reverse=True):
        table.add_row(f"warnings queued, {_stage_name(stage)}", str(report.warnings_queued[stage]))
    if not report.warnings_queued:
        table.add_row("warnings queued", "0")
    table.add_row("recycled", str(report.recycled))
    table.add_row("deferred (waiting for minimum notice)", str(report.deferred))
    if report.guards:
        table.add_row(f"withheld by guard ({', '.join(report.guards)})", str(report.withheld))
    table.add_row("on hold", str(report.on_hold))
    app.console.print(table)
