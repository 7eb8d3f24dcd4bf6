"""Logging, configured once at the edge: structlog key-value events on standard error.

JSON lines when standard error is not a terminal (or ``log_format = "json"``), readable lines on
a terminal. Every event has a name (``run.started``, ``send.failed``, …) and, inside a run, the
run id.
Before anything is written, phone numbers are masked (``+855*****678``) unless
``log_full_numbers`` is on, and secrets are blanked: values of fields named like tokens or
passwords, and the literal values of the secrets this process was given (the Twilio auth token, the
database password), wherever they appear. Libraries that log through the standard ``logging``
module go through the same redaction and the same renderer.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from jobs.phone import mask

__all__ = ["Redactor", "configure_logging"]

# What looks like a phone number: E.164 (+ and 8 to 15 digits, maybe spaced), a national number
# (0 and 8 to 10 digits, maybe spaced), or 855 and 8 or 9 digits. Dates and times, with their
# dashes and colons, do not match.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d(?: ?\d){7,14}|0\d(?: ?\d){7,9}|855\d{8,9})(?![\w])")
_SECRET_KEYS = re.compile(r"token|password|passwd|secret|authorization|api_key", re.IGNORECASE)
_SECRET_VARIABLES = ("TWILIO_AUTH_TOKEN",)
_BLANK = "***"


class Redactor:
    """Masks phone numbers and blanks secrets in every value of an event."""

    def __init__(self, *, full_numbers: bool, secrets: Iterable[str]) -> None:
        self.full_numbers = full_numbers
        # Longest first, so that a secret containing another is blanked whole.
        self.secrets = sorted(
            {value for value in secrets if len(value) >= 4}, key=len, reverse=True
        )

    def text(self, value: str) -> str:
        """One string, cleaned."""
        for secret in self.secrets:
            value = value.replace(secret, _BLANK)
        if not self.full_numbers:
            value = _PHONE.sub(lambda match: mask(match.group(0).replace(" ", "")), value)
        return value

    def value(self, key: str, value: Any) -> Any:
        """A field's value, cleaned, by its key and its content."""
        if _SECRET_KEYS.search(key):
            return _BLANK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {name: self.value(str(name), item) for name, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(key, item) for item in value]
        return value

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        return {key: self.value(key, value) for key, value in event.items()}


def _process_secrets(database_url: str | None) -> list[str]:
    found = [os.environ[name] for name in _SECRET_VARIABLES if os.environ.get(name)]
    if database_url:
        password = sa.make_url(database_url).password
        if password:
            found.append(str(password))
    return found


def configure_logging(
    log_format: str = "auto",
    *,
    full_numbers: bool = False,
    database_url: str | None = None,
    level: int = logging.INFO,
    stream: Any = None,
) -> None:
    """Set structlog and the standard library's logging up for the whole process."""
    target = stream or sys.stderr
    as_json = log_format == "json" or (log_format == "auto" and not target.isatty())
    redactor = Redactor(full_numbers=full_numbers, secrets=_process_secrets(database_url))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=target),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(target)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # Libraries speak up for warnings and errors only (APScheduler's skipped or missed jobs among
    # them); recycler's own events say what ran and what it did.
