"""``recycler``: the one command-line program.

Each command's module is imported when that command runs, not before: a command then pays at
start only for what it uses (the API's and the console's web stack, the daemon's scheduler, the
imports' readers), which the test suite's hundreds of subprocesses, and every cron job, feel.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from jobs import __version__
from jobs.cli.app import App, RecyclerGroup

__all__ = ["cli"]

# Each command by name, and where it is defined ("module:attribute" under jobs.cli).
_COMMANDS = {
    "db": "db:db_group",
    "import": "data:import_group",
    "seed": "data:seed_command",
    "run": "nightly:run_command",
    "send": "sending:send_command",
    "daemon": "daemon:daemon_command",
    "hold": "safeguards:hold_command",
    "release": "safeguards:release_command",
    "transfer": "safeguards:transfer_group",
    "reinstate": "safeguards:reinstate_command",
    "pool": "safeguards:pool_group",
    "reassigned": "safeguards:reassigned_group",
    "status": "looking:status_command",
    "number": "looking:number_command",
    "api": "api:api_command",
    "api-client": "api:api_client_group",
    "staff": "staff:staff_group",
    "console": "staff:console_command",
}


class _LazyGroup(RecyclerGroup):
    """The top-level group: commands are loaded by name, when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = _COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, attribute = where.split(":")
        command = getattr(importlib.import_module(f"jobs.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
