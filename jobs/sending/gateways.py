"""The composition root for gateways: the setting `gateway` picks the adapter.

Secrets come from the environment only (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``,
``KANNEL_PASSWORD``, ``KANNEL_RECEIPT_SECRET``), never from the settings file, and are handed
straight to the adapter.
"""

from __future__ import annotations

import os
from typing import TextIO

from jobs.errors import InputRefused
from jobs.settings import Settings
from notifier.console import ConsoleGateway
from notifier.gateway import Gateway

__all__ = ["KANNEL_PASSWORD", "KANNEL_RECEIPT_SECRET", "build_gateway"]

_SECRETS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
KANNEL_PASSWORD = "KANNEL_PASSWORD"  # noqa: S105  (the variable's name, not a password)
KANNEL_RECEIPT_SECRET = "KANNEL_RECEIPT_SECRET"  # noqa: S105


def build_gateway(settings: Settings, stream: TextIO | None = None) -> Gateway:
    """The gateway adapter the settings ask for."""
    if settings.gateway == "console":
        return ConsoleGateway(path=settings.console_outbox_path, stream=stream)
    if settings.gateway == "kannel":
        return _kannel(settings)
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
        status_callback_url=settings.twilio_status_callback_url,
    )
    return TwilioGateway(config)


def _kannel(settings: Settings) -> Gateway:
    from notifier.kannel_gateway import KannelConfig, KannelGateway  # noqa: PLC0415

    wanted = [KANNEL_PASSWORD]
    if settings.kannel_receipt_url:
        wanted.append(KANNEL_RECEIPT_SECRET)
    missing = [name for name in wanted if not os.environ.get(name)]
    if missing:
        raise InputRefused(
            f"invalid settings: gateway = kannel needs {' and '.join(missing)} in the environment"
            + (" (kannel_receipt_url is set)" if KANNEL_RECEIPT_SECRET in missing else "")
        )
    assert settings.kannel_username is not None  # the settings refuse kannel without them
    assert settings.kannel_sender is not None
    return KannelGateway(
        KannelConfig(
            sendsms_url=settings.kannel_sendsms_url,
            username=settings.kannel_username,
            password=os.environ[KANNEL_PASSWORD],
            sender=settings.kannel_sender,
            smsc_id=settings.kannel_smsc_id,
            receipt_url=settings.kannel_receipt_url,
            receipt_secret=os.environ.get(KANNEL_RECEIPT_SECRET),
            timeout_seconds=settings.send_timeout_seconds,
            max_connections=settings.send_concurrency,
        )
    )
