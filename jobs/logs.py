"""Logging, configured once at the edge: structlog key-value events on standard error.

JSON lines when standard error is not a terminal (or ``log_format = "json"``), readable lines on a
terminal. Phone numbers in the fields ``msisdn`` and ``to`` are masked unless the setting
``log_full_numbers`` is on.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from jobs.phone import mask

__all__ = ["configure_logging"]

_NUMBER_FIELDS = ("msisdn", "to")


def _mask_numbers(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    for key in _NUMBER_FIELDS:
        value = event.get(key)
        if isinstance(value, str):
            event[key] = mask(value)
    return event


def configure_logging(
    log_format: str = "auto", *, full_numbers: bool = False, level: int = logging.INFO
) -> None:
    """Set structlog up for the whole process."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not full_numbers:
        processors.append(_mask_numbers)
    if as_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
