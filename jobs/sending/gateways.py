"""The composition root for gateways: the setting `gateway` picks the adapter.

Secrets come from the environment only (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``), never from
the settings file, and are handed straight to the adapter.
"""

from __future__ import annotations

import os
from typing import TextIO

from jobs.errors import InputRefused
from jobs.settings import Settings
from notifier.console import ConsoleGateway
from notifier.gateway import Gateway

__all__ = ["build_gateway"]

_SECRETS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")


def build_gateway(settings: Settings, stream: TextIO | None = None) -> Gateway:
    """The gateway adapter the settings ask for."""
    if settings.gateway == "console":
        return ConsoleGateway(path=settings.console_outbox_path, stream=stream)
    # Imported here: the twilio client and aiohttp cost every other command start-up time and
    # memory for nothing.
    from notifier.twilio_gateway import TwilioConfig, TwilioGateway  # noqa: PLC0415

    missing = [name for name in _SECRETS if not os.environ.get(name)]
    if missing:
        raise InputRefused(
            f"invalid settings: gateway = twilio needs {' and '.join(missing)} in the environment"
        )
    config = TwilioConfig(
        account_sid=os.environ["TWILIO_ACCOUNT_SID"],
        auth_token=os.environ["TWILIO_AUTH_TOKEN"],
        from_number=settings.twilio_from,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        base_url=settings.twilio_base_url,
        timeout_seconds=settings.send_timeout_seconds,
        max_connections=settings.send_concurrency,
    )
    return TwilioGateway(config)
