"""``recycler daemon``: the long-running service."""

from __future__ import annotations

import click

from jobs.cli.app import App, configure, pass_app
from jobs.daemon import Daemon


@click.command("daemon")
@pass_app
def daemon_command(app: App) -> None:
    """Run the nightly job on `run_schedule` and send during sending hours, until stopped.

    On start it runs at once if no run has succeeded since the schedule last fired (a catch-up).
    SIGTERM or SIGINT: the run in progress stops after its current statement and keeps nothing,
    the sender finishes its requests in flight and releases the rest; exit 0. With
    `metrics_port` set, Prometheus metrics are served on that port.
    """
    configure(app)
    Daemon(app.database(), app.settings, app.templates, app.clock, actor=app.actor).run()
