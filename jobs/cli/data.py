"""``recycler import`` and ``recycler seed``: getting data in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from jobs.cli.app import DATE, App, configure, emit_json, pass_app
from jobs.clock import parse_moment
from jobs.errors import ExitCode, InputRefused
from jobs.importing.loader import ImportSummary
from jobs.importing.subscribers import import_subscribers
from jobs.importing.topups import import_topups
from jobs.seeding import seed


@contextmanager
def _progress(path: Path, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the file's bytes, on a terminal only."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"reading {path.name}", total=path.stat().st_size)
        yield lambda count: progress.advance(task, count)


def _report(summary: ImportSummary, as_json: bool) -> None:
    if as_json:
        emit_json(summary.to_json())
    else:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(summary.outcomes.items()))
        click.echo(
            f"{summary.kind}: {summary.rows_read} rows read, {summary.applied} applied"
            f"{f' ({outcomes})' if outcomes else ''}, {summary.ignored} ignored "
            f"(already imported), {summary.rejected} rejected"
        )
        if summary.rejects_path:
            click.echo(f"rejected rows, with line numbers and reasons: {summary.rejects_path}")
    if summary.rejected:
        raise SystemExit(ExitCode.PARTIAL)


_FILE = click.Path(exists=False, dir_okay=False, path_type=Path)
_REJECTS = click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected rows (default: FILE.rejects.csv).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")


@click.group("import")
def import_group() -> None:
    """Load subscriber or top-up files (CSV, UTF-8, header row).

    Good rows are applied in one transaction; bad rows go to a rejects file with line number
    and reason. Exit codes: 0 all applied; 3 some rows rejected; 2 file refused, nothing applied.
    """


@import_group.command("subscribers")
@click.argument("file", type=_FILE)
@_REJECTS
@_JSON
@pass_app
def import_subscribers_command(
    app: App, file: Path, rejects_path: Path | None, as_json: bool
) -> None:
    """Load FILE with columns msisdn,owner_id,language,validity_end."""
    configure(app)
    database = app.database()
    with _progress(file, not as_json) as on_progress:
        summary = import_subscribers(
            database,
            file,
            app.settings,
            app.clock,
            actor=app.actor,
            rejects_path=rejects_path,
            on_progress=on_progress,
        )
    _report(summary, as_json)


@import_group.command("topups")
@click.argument("file", type=_FILE)
@_REJECTS
@click.option(
    "--watermark",
    help="The feed is complete up to this moment (ISO 8601); keeps the stale-feed guard "
    "quiet on days without top-ups.",
)
@_JSON
@pass_app
def import_topups_command(
    app: App, file: Path, rejects_path: Path | None, watermark: str | None, as_json: bool
) -> None:
    """Load FILE with columns topup_id,msisdn,topped_up_at,validity_end[,amount]."""
    configure(app)
    declared: datetime | None = None
    if watermark is not None:
        try:
            declared = parse_moment(watermark, app.settings.zone)
        except ValueError as error:
            raise InputRefused(f"--watermark: {error}") from None
        if declared > app.clock.now():
            raise InputRefused(f"--watermark {watermark} is in the future")
    database = app.database()
    with _progress(file, not as_json) as on_progress:
        summary = import_topups(
            database,
            file,
            app.settings,
            app.clock,
            actor=app.actor,
            rejects_path=rejects_path,
            watermark=declared,
            on_progress=on_progress,
        )
    _report(summary, as_json)


@click.command("seed")
@click.option(
    "--subscribers",
    type=click.IntRange(min=1, max=50_000_000),
    required=True,
    help="How many numbers to create.",
)
@click.option(
    "--as-of",
    type=DATE,
    help="The date the base is built for (default today): its first run is a normal night.",
)
@click.option("--random-seed", type=int, default=1, show_default=True, help="Same seed, same base.")
@_JSON
@pass_app
def seed_command(
    app: App, subscribers: int, as_of: date | None, random_seed: int, as_json: bool
) -> None:
    """Write a synthetic subscriber base for demos and benchmarks (numbers already present are
    left alone)."""
    configure(app)
    summary = seed(
        app.database(),
        app.settings,
        app.templates,
        app.clock,
        subscribers=subscribers,
        as_of=as_of,
        random_seed=random_seed,
    )
    if as_json:
        emit_json(summary.to_json())
    else:
        click.echo(
            f"seeded {summary.created} numbers for {summary.as_of.isoformat()} "
            f"({summary.already_present} already present)"
        )
