"""The command-line program's frame: the group, shared options, and error translation."""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import sqlalchemy.exc
from rich.console import Console

from jobs.clock import Clock, SystemClock, out_of_range, parse_date
from jobs.database.engine import Database, Timeouts
from jobs.errors import ExitCode, RecyclerError
from jobs.logs import configure_logging
from jobs.settings import Settings, SettingsError, load_settings, unknown_variables
from notifier.templates import TemplateBook, TemplateError

if TYPE_CHECKING:
    from jobs.metrics import Metrics

__all__ = [
    "DATE",
    "App",
    "IsoDate",
    "RecyclerGroup",
    "emit_json",
    "fail",
    "pass_app",
    "write_metrics",
]


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid, as in some containers
        return "unknown"


@dataclass
class App:
    """What every command needs, built once from the global options."""

    config_path: Path | None
    clock: Clock = field(default_factory=SystemClock)
    # Piped into a file or a pager, tables get room to breathe instead of rich's 80 columns.
    console: Console = field(
        default_factory=lambda: Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    )
    _opened: list[Database] = field(default_factory=list, init=False, repr=False)

    @cached_property
    def settings(self) -> Settings:
        """The settings, read at first use and then fixed; a RECYCLER_* variable that is not a
        setting is named on standard error, since it would otherwise be ignored unseen."""
        for sentence in unknown_variables(os.environ):
            click.echo(f"warning: {sentence}", err=True)
        return load_settings(self.config_path)

    @cached_property
    def templates(self) -> TemplateBook:
        """The warning templates, checked against max_segments."""
        return TemplateBook.load(max_segments=self.settings.max_segments)

    @cached_property
    def actor(self) -> str:
        """Who is running this command, for audit events."""
        return _operator()

    def database(self, *, check_schema: bool = True, connections: int = 4) -> Database:
        """The database, with its schema checked (and created, for a new SQLite file);
        ``connections`` kept open for a process that answers several requests at once."""
        settings = self.settings
        database = Database(
            settings.database_url,
            timeouts=Timeouts(
                connect_seconds=settings.database_connect_timeout_seconds,
                statement_seconds=settings.database_statement_timeout_seconds,
                idle_in_transaction_seconds=settings.database_idle_transaction_timeout_seconds,
            ),
            connections=connections,
        )
        self._opened.append(database)
        if check_schema:
            # Imported here: Alembic costs every command's start, and only a database needs it.
            from jobs.database.migrate import ensure_schema  # noqa: PLC0415

            ensure_schema(database)
        return database

    def close(self) -> None:
        """Release the database connections the command opened."""
        while self._opened:
            self._opened.pop().dispose()


pass_app = click.make_pass_decorator(App)


class IsoDate(click.ParamType[date]):
    """A date on the command line, YYYY-MM-DD, within the dates recycler accepts."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            day = parse_date(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)
        problem = out_of_range(day, "the date")
        if problem is not None:
            self.fail(problem, param, ctx)
        return day


DATE = IsoDate()


def emit_json(value: Any) -> None:
    """Print one JSON document on standard output."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def fail(message: str, code: int = ExitCode.FAILURE, *, as_json: bool = False) -> NoReturn:
    """Print an error and exit: a sentence on standard error, or under --json one JSON object
    on standard output, so that a program reading the output always gets JSON."""
    if as_json:
        emit_json({"error": {"exit_code": code, "message": message}})
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


class RecyclerGroup(click.Group):
    """A group that turns recycler's own errors into a message and an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Errors can come before the subcommand has read its own --json: note it now.
        ctx.meta["recycler.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get("recycler.json"))
        try:
            return super().invoke(ctx)
        except RecyclerError as error:
            fail(error.message, error.exit_code, as_json=as_json)
        except SettingsError as error:
            fail(f"invalid settings: {error}", ExitCode.INPUT_REFUSED, as_json=as_json)
        except TemplateError as error:
            fail(f"invalid templates: {error}", ExitCode.FAILURE, as_json=as_json)
        except sqlalchemy.exc.OperationalError as error:
            fail(
                f"the database is not usable: {error.orig or error}",
                ExitCode.FAILURE,
                as_json=as_json,
            )
        except KeyboardInterrupt:
            # Ctrl-C, or SIGTERM (which means the same here): every transaction the command
            # had open was rolled back on the way out.
            fail(
                "interrupted: stopped before finishing; nothing was applied",
                ExitCode.FAILURE,
                as_json=as_json,
            )
        except click.BadParameter as error:
            if not as_json:
                raise
            hint = (
                error.param.opts[0] if error.param is not None and error.param.opts else "a value"
            )
            fail(f"invalid value for {hint}: {error.message}", error.exit_code, as_json=True)
        except click.ClickException as error:
            if not as_json:
                raise
            fail(error.format_message(), error.exit_code, as_json=True)


def write_metrics(app: App, database: Database, metrics: Metrics | None = None) -> None:
    """One-shot commands leave their figures in the textfile, when one is configured."""
    path = app.settings.metrics_textfile
    if path is None:
        return
    from jobs.metrics import Metrics  # noqa: PLC0415  (only the commands that write metrics)

    chosen = metrics or Metrics()
    chosen.refresh(
        database, app.clock.now(), receipt_wait=timedelta(hours=app.settings.receipt_wait_hours)
    )
    chosen.write(path)


def configure(app: App) -> None:
    """Apply the settings that shape the process itself (logging)."""
    settings = app.settings
    configure_logging(
        settings.log_format,
        full_numbers=settings.log_full_numbers,
        database_url=settings.database_url,
    )


def serve(application: Any, host: str, port: int, what: str) -> None:
    """Serve an ASGI application with uvicorn until SIGTERM (``recycler api``, ``recycler
    console``), with recycler's logging and exit codes."""
    import uvicorn  # noqa: PLC0415  (only the HTTP commands need the server)

    try:
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
        )
    except SystemExit as stopped:
        # uvicorn exits 3 when it cannot start (the port is taken); recycler's 3 means
        # "partly done", so a server that never served is a plain failure.
        if stopped.code not in (0, None):
            fail(
                f"{what} could not serve on {host}:{port} (the log above says why)",
                ExitCode.FAILURE,
            )
        raise
