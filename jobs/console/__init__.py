"""The care and operations console (issue 14): server-rendered pages over the same services as
the command line, every action signed by the signed-in person."""

from jobs.console.app import create_console

__all__ = ["create_console"]
