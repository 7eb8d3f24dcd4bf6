"""The errors recycler reports to people, each with its exit code.

An error's docstring is its default message. Driver and library errors are translated into these at
the boundary, so that a command prints a sentence, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "AlreadyRan",
    "ExitCode",
    "FutureDateError",
    "InputRefused",
    "NumberNotFound",
    "RecyclerError",
    "RunInProgress",
    "RunInterrupted",
    "SchemaError",
    "SenderInProgress",
]


class ExitCode:
    """Exit codes shared by every command (documented in the README)."""

    DONE = 0
    FAILURE = 1
    INPUT_REFUSED = 2
    PARTIAL = 3  # done, but part was withheld (a guard) or rejected (bad rows)
    BUSY = 4  # another process holds the lock this command needs


class RecyclerError(Exception):
    """recycler failed."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The sentence shown to the user."""
        return str(self)


class SchemaError(RecyclerError):
    """The database schema is missing or out of date; run `recycler db upgrade`."""


class InputRefused(RecyclerError):
    """The input was refused; nothing was changed."""

    exit_code = ExitCode.INPUT_REFUSED


class FutureDateError(InputRefused):
    """A run for a date after today would recycle numbers early; it was refused."""


class NumberNotFound(InputRefused):
    """recycler knows no such number."""


class RunInterrupted(RecyclerError):
    """The run was stopped before it finished; none of its changes were kept."""


class AlreadyRan(RecyclerError):
    """A run for this date has already completed."""

    exit_code = ExitCode.DONE


class RunInProgress(RecyclerError):
    """Another nightly run holds the run lock."""

    exit_code = ExitCode.BUSY


class SenderInProgress(RecyclerError):
    """Another sender is already draining this SQLite database."""

    exit_code = ExitCode.BUSY
