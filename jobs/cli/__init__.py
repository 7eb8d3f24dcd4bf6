"""``recycler``: the one command-line program."""

from __future__ import annotations

from pathlib import Path

import click

from jobs import __version__
from jobs.cli.api import api_client_group, api_command
from jobs.cli.app import App, RecyclerGroup
from jobs.cli.daemon import daemon_command
from jobs.cli.data import import_group, seed_command
from jobs.cli.db import db_group
from jobs.cli.looking import number_command, status_command
from jobs.cli.nightly import run_command
from jobs.cli.safeguards import (
    hold_command,
    pool_group,
    reassigned_group,
    reinstate_command,
    release_command,
    transfer_group,
)
from jobs.cli.sending import send_command
from jobs.cli.staff import console_command, staff_group

__all__ = ["cli"]


@click.group(cls=RecyclerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RECYCLER_CONFIG",
    help="TOML settings file (environment variables RECYCLER_* win over it).",
)
@click.version_option(__version__, prog_name="recycler")
@click.pass_context
def cli(context: click.Context, config_path: Path | None) -> None:
    """recycler: warns prepaid subscribers before their grace period ends, and moves numbers
    past it into the resale pool."""
    # A program that embeds the command line (a test on a clock of its own) may hand in its App.
    if isinstance(context.obj, App):
        context.obj.config_path = config_path
    else:
        context.obj = App(config_path=config_path)
    context.call_on_close(context.obj.close)


cli.add_command(db_group)
cli.add_command(import_group)
cli.add_command(seed_command)
cli.add_command(run_command)
cli.add_command(send_command)
cli.add_command(daemon_command)
cli.add_command(hold_command)
cli.add_command(release_command)
cli.add_command(transfer_group)
cli.add_command(reinstate_command)
cli.add_command(pool_group)
cli.add_command(reassigned_group)
cli.add_command(status_command)
cli.add_command(number_command)
cli.add_command(api_command)
cli.add_command(api_client_group)
cli.add_command(staff_group)
cli.add_command(console_command)
