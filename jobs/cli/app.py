"""The command-line program's frame: the group, shared options, and error translation."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import click
import sqlalchemy.exc
from rich.console import Console

from jobs.clock import Clock, SystemClock
from jobs.database.engine import Database
from jobs.database.migrate import ensure_schema
from jobs.errors import ExitCode, RecyclerError
from jobs.logs import configure_logging
from jobs.metrics import Metrics
from jobs.settings import Settings, SettingsError, load_settings
from notifier.templates import TemplateBook, TemplateError

__all__ = ["App", "RecyclerGroup", "emit_json", "fail", "pass_app", "write_metrics"]


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

    @cached_property
    def settings(self) -> Settings:
        """The settings, read at first use and then fixed."""
        return load_settings(self.config_path)

    @cached_property
    def templates(self) -> TemplateBook:
        """The warning templates, checked against max_segments."""
        return TemplateBook.load(max_segments=self.settings.max_segments)

    @cached_property
    def actor(self) -> str:
        """Who is running this command, for audit events."""
        return _operator()

    def database(self) -> Database:
        """The database, with its schema checked (and created, for a new SQLite file)."""
        database = Database(self.settings.database_url)
        ensure_schema(database)
        return database


pass_app = click.make_pass_decorator(App)


def emit_json(value: Any) -> None:
    """Print one JSON document on standard output."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def fail(message: str, code: int = ExitCode.FAILURE) -> NoReturn:
    """Print an error and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class RecyclerGroup(click.Group):
    """A group that turns recycler's own errors into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RecyclerError as error:
            fail(error.message, error.exit_code)
        except SettingsError as error:
            fail(f"invalid settings: {error}", ExitCode.INPUT_REFUSED)
        except TemplateError as error:
            fail(f"invalid templates: {error}", ExitCode.FAILURE)
        except sqlalchemy.exc.OperationalError as error:
            fail(f"the database is not usable: {error.orig or error}", ExitCode.FAILURE)


def write_metrics(app: App, database: Database, metrics: Metrics | None = None) -> None:
    """One-shot commands leave their figures in the textfile, when one is configured."""
    path = app.settings.metrics_textfile
    if path is None:
        return
    chosen = metrics or Metrics()
    chosen.refresh(database, app.clock.now())
    chosen.write(path)


def configure(app: App) -> None:
    """Apply the settings that shape the process itself (logging)."""
    settings = app.settings
    configure_logging(
        settings.log_format,
        full_numbers=settings.log_full_numbers,
        database_url=settings.database_url,
    )
