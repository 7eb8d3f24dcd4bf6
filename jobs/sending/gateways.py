"""The composition root for gateways: the setting `gateway` picks the adapter."""

from __future__ import annotations

from typing import TextIO

from jobs.settings import Settings
from notifier.console import ConsoleGateway
from notifier.gateway import Gateway

__all__ = ["build_gateway"]


def build_gateway(settings: Settings, stream: TextIO | None = None) -> Gateway:
    """The gateway adapter the settings ask for."""
    return ConsoleGateway(path=settings.console_outbox_path, stream=stream)
